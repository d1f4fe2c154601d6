import { describe, expect, it } from 'vitest';
import { Hub } from '../../src/push/hub.js';

const socketOf = (userId: string) => ({ userId });

describe('Hub (a push node: user → sockets)', () => {
  it("says when a socket is its user's first, and counts every socket", () => {
    const hub = new Hub<{ userId: string }>();
    const [a1, a2, b1] = [socketOf('alice'), socketOf('alice'), socketOf('bob')];
    expect(hub.add(a1)).toBe(true);
    expect(hub.add(a2)).toBe(false);
    expect(hub.add(b1)).toBe(true);
    expect(hub.connectionCount).toBe(3);
    expect([...(hub.connectionsOf('alice') ?? [])]).toEqual([a1, a2]);
    expect([...hub.userIds()].sort()).toEqual(['alice', 'bob']);
    expect([...hub.connections()]).toHaveLength(3);
  });

  it("says when a socket was its user's last, and forgets the user then", () => {
    const hub = new Hub<{ userId: string }>();
    const [a1, a2] = [socketOf('alice'), socketOf('alice')];
    hub.add(a1);
    hub.add(a2);
    expect(hub.remove(a1)).toBe(false);
    expect(hub.connectionsOf('alice')?.size).toBe(1);
    expect(hub.remove(a2)).toBe(true);
    expect(hub.connectionsOf('alice')).toBeUndefined();
    expect([...hub.userIds()]).toEqual([]);
    expect(hub.connectionCount).toBe(0);
  });

  it('ignores the removal of a socket it does not hold', () => {
    const hub = new Hub<{ userId: string }>();
    const a1 = socketOf('alice');
    hub.add(a1);
    expect(hub.remove(socketOf('alice'))).toBe(false);
    expect(hub.remove(socketOf('carol'))).toBe(false);
    expect(hub.remove(a1)).toBe(true);
    expect(hub.remove(a1)).toBe(false);
    expect(hub.connectionCount).toBe(0);
  });
});
