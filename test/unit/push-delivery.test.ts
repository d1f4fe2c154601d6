import { describe, expect, it } from 'vitest';
import { Delivery } from '../../src/push/delivery.js';
import { Hub } from '../../src/push/hub.js';
import type { Connection } from '../../src/push/connection.js';
import { testLog } from '../support/silent-log.js';
import { envelope, fakeConnection } from './push-fakes.js';

function setup() {
  const hub = new Hub<Connection>();
  let deliveredCount = 0;
  const latencies: number[] = [];
  const delivery = new Delivery({
    hub,
    log: testLog('push'),
    delivered: { inc: (n) => void (deliveredCount += n) },
    latency: { observe: (s) => void latencies.push(s) },
  });
  /** A socket of `userId` whose replay is already sent. */
  const connect = (userId: string) => {
    const c = fakeConnection(userId);
    c.conn.queuedDuringReplay = undefined;
    hub.add(c.conn);
    return c;
  };
  return { hub, delivery, connect, deliveredCount: () => deliveredCount, latencies };
}

describe('Delivery (the forward hop on a push node)', () => {
  it('pushes each message to every socket of its user and to nobody else', () => {
    const { delivery, connect, deliveredCount, latencies } = setup();
    const [alice1, alice2, bob] = [connect('alice'), connect('alice'), connect('bob')];
    const delivered = delivery.forward([
      envelope('m1', 'alice', { n: 1 }),
      envelope('m2', 'carol'),
    ]);
    expect(delivered).toEqual(['m1']);
    expect(alice1.socket.messageIds).toEqual(['m1']);
    expect(alice2.socket.sent).toEqual(alice1.socket.sent);
    expect(alice1.socket.frames[0]).toMatchObject({ type: 'message', id: 'm1', payload: { n: 1 } });
    expect(bob.socket.sent).toEqual([]);
    expect(deliveredCount()).toBe(1);
    expect(latencies).toHaveLength(1);
  });

  it('queues a message for a socket whose replay is being sent, and counts it delivered', () => {
    const { hub, delivery } = setup();
    const fresh = fakeConnection('alice');
    hub.add(fresh.conn);
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual(['m1']);
    expect(fresh.socket.sent).toEqual([]);
    expect(fresh.conn.queuedDuringReplay?.map((q) => q.id)).toEqual(['m1']);
  });

  it('does not push a replayed id a second time, but does push a later redelivery', () => {
    const { delivery, connect } = setup();
    const alice = connect('alice');
    alice.conn.replayed = new Set(['m1']);
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual(['m1']);
    expect(alice.socket.messageIds).toEqual([]);
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual(['m1']);
    expect(alice.socket.messageIds).toEqual(['m1']);
  });

  it('pushes a redelivery (its ack overdue) to a socket whose replay had it, and only once', () => {
    const { delivery, connect } = setup();
    const alice = connect('alice');
    alice.conn.replayed = new Set(['m1']);
    const redelivery = { ...envelope('m1', 'alice'), redelivery: true as const };
    expect(delivery.forward([redelivery])).toEqual(['m1']);
    expect(alice.socket.messageIds).toEqual(['m1']);
    // The replay's id is spent: a live copy arriving after it is pushed, not skipped.
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual(['m1']);
    expect(alice.socket.messageIds).toEqual(['m1', 'm1']);
  });

  it('does not count a message delivered when no socket of the user could take it', () => {
    const { delivery, connect, deliveredCount } = setup();
    const alice = connect('alice');
    alice.socket.terminate();
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual([]);
    expect(deliveredCount()).toBe(0);
  });
});
