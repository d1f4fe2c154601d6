import { describe, expect, it } from 'vitest';
import type { Instance } from '../../src/core/discovery.js';
import { ConnectBalancer } from '../../src/dispatch/connect-balancer.js';

const node = (n: number, connections: number | undefined): Instance => ({
  id: `push-${n}`,
  service: 'push',
  address: '127.0.0.1',
  port: 7100 + n,
  tags: [],
  meta: {
    ws_url: `ws://127.0.0.1:${7100 + n}/ws`,
    ...(connections === undefined ? {} : { connections: String(connections) }),
  },
});

describe('ConnectBalancer', () => {
  it('picks the node with the fewest reported connections', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 10), node(2, 3)]);
    expect(b.pick()).toBe('ws://127.0.0.1:7102/ws');
  });

  it('spreads a burst between reports instead of piling onto one node', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 0), node(2, 0)]);
    const picks = Array.from({ length: 6 }, () => b.pick());
    expect(picks.filter((u) => u?.includes('7101'))).toHaveLength(3);
    expect(picks.filter((u) => u?.includes('7102'))).toHaveLength(3);
  });

  it('counts a fresh report instead of what it handed out before it', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 0), node(2, 0)]);
    for (let i = 0; i < 4; i++) b.pick();
    b.update([node(1, 2), node(2, 5)]);
    expect(b.pick()).toBe('ws://127.0.0.1:7101/ws');
  });

  it('has nothing to offer without passing nodes, and ignores nodes without ws_url', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    expect(b.pick()).toBeUndefined();
    b.update([{ ...node(1, 0), meta: {} }]);
    expect(b.pick()).toBeUndefined();
  });

  it('hands out the last passing nodes for lastKnownMs once none passes, then nothing', () => {
    const clock = { t: 0, now: () => clock.t };
    const b = new ConnectBalancer({ lastKnownMs: 30_000, clock });
    b.update([node(1, 0), node(2, 0)]);
    b.update([node(2, 0)]); // node 1 left: it is not handed out again
    b.update([]); // node 2 misses a check too
    clock.t += 29_000;
    expect(b.pick()).toBe('ws://127.0.0.1:7102/ws');
    clock.t += 1001;
    expect(b.pick()).toBeUndefined();
    b.update([node(1, 0)]); // passing again: handed out at once
    expect(b.pick()).toBe('ws://127.0.0.1:7101/ws');
  });
});
