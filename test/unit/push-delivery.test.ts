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
    expect(delivered).toEqual({ delivered: ['m1'], replayed: [] });
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
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual({
      delivered: ['m1'],
      replayed: [],
    });
    expect(fresh.socket.sent).toEqual([]);
    expect([...(fresh.conn.queuedDuringReplay?.keys() ?? [])]).toEqual(['m1']);
  });

  it('neither pushes nor counts again the live copy of a replayed id, but pushes a later copy', () => {
    const { delivery, connect, deliveredCount } = setup();
    const alice = connect('alice');
    alice.conn.replayed = new Set(['m1']);
    // Its replay counted it: the answer says so, and the stage counter does not count it.
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual({
      delivered: [],
      replayed: ['m1'],
    });
    expect(alice.socket.messageIds).toEqual([]);
    expect(deliveredCount()).toBe(0);
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual({
      delivered: ['m1'],
      replayed: [],
    });
    expect(alice.socket.messageIds).toEqual(['m1']);
  });

  it('counts a message delivered when one socket of its user had it replayed and another got it live', () => {
    const { delivery, connect } = setup();
    const [phone, laptop] = [connect('alice'), connect('alice')];
    phone.conn.replayed = new Set(['m1']);
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual({
      delivered: ['m1'],
      replayed: [],
    });
    expect(phone.socket.messageIds).toEqual([]);
    expect(laptop.socket.messageIds).toEqual(['m1']);
  });

  it('pushes a redelivery (its ack overdue) to a socket whose replay had it, and only once', () => {
    const { delivery, connect } = setup();
    const alice = connect('alice');
    alice.conn.replayed = new Set(['m1']);
    const redelivery = { ...envelope('m1', 'alice'), redelivery: true as const };
    expect(delivery.forward([redelivery])).toEqual({ delivered: ['m1'], replayed: [] });
    expect(alice.socket.messageIds).toEqual(['m1']);
    // The replay's id is spent: a live copy arriving after it is pushed, not skipped.
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual({
      delivered: ['m1'],
      replayed: [],
    });
    expect(alice.socket.messageIds).toEqual(['m1', 'm1']);
  });

  it('does not count a message delivered when no socket of the user could take it', () => {
    const { delivery, connect, deliveredCount } = setup();
    const alice = connect('alice');
    alice.socket.terminate();
    expect(delivery.forward([envelope('m1', 'alice')])).toEqual({ delivered: [], replayed: [] });
    expect(deliveredCount()).toBe(0);
  });
});
