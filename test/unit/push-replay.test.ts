import { afterEach, describe, expect, it, vi } from 'vitest';
import { PeerUnavailable } from '../../src/core/peers.js';
import { REPLAY_ATTEMPTS, REPLAY_LIMIT } from '../../src/core/tuning.js';
import { deliveredHop, unackedHop, type Envelope } from '../../src/protocol/hops.js';
import type { Connection } from '../../src/push/connection.js';
import { Delivery } from '../../src/push/delivery.js';
import { Hub } from '../../src/push/hub.js';
import { Replay } from '../../src/push/replay.js';
import { testLog } from '../support/silent-log.js';
import { envelope, FakePeers, fakeConnection } from './push-fakes.js';

afterEach(() => vi.useRealTimers());

/** A node with one new socket of alice, a collect answering `unacked`, and delivery. */
function setup(unacked: () => Envelope[] | Promise<Envelope[]>) {
  const collect = new FakePeers(async (path) =>
    path === unackedHop.path ? { messages: await unacked() } : {},
  );
  const hub = new Hub<Connection>();
  const alice = fakeConnection('alice');
  hub.add(alice.conn);
  const log = testLog('push');
  const delivery = new Delivery({
    hub,
    log,
    delivered: { inc: () => undefined },
    latency: { observe: () => undefined },
  });
  return { collect, alice, delivery, replay: new Replay({ collect, log }) };
}

describe('Replay (on connect)', () => {
  it('pushes the unacked messages first, then the live ones that came meanwhile, each once', async () => {
    let answer: (m: Envelope[]) => void = () => undefined;
    const { collect, alice, delivery, replay } = setup(
      () => new Promise<Envelope[]>((resolve) => (answer = resolve)),
    );
    const running = replay.run(alice.conn);
    // Live messages forwarded while collect is asked: m2 is also in the replay.
    delivery.forward([envelope('m3', 'alice'), envelope('m2', 'alice')]);
    expect(alice.socket.sent).toEqual([]);
    answer([envelope('m1', 'alice'), envelope('m2', 'alice')]);
    await running;
    expect(alice.socket.messageIds).toEqual(['m1', 'm2', 'm3']);
    expect(collect.callsTo(unackedHop.path)).toEqual([{ userId: 'alice', limit: REPLAY_LIMIT }]);
    expect(collect.callsTo(deliveredHop.path)).toEqual([{ ids: ['m1', 'm2'] }]);
    // Once it is sent, live messages go straight to the socket.
    delivery.forward([envelope('m4', 'alice')]);
    expect(alice.socket.messageIds).toEqual(['m1', 'm2', 'm3', 'm4']);
  });

  it('marks nothing delivered when there was nothing to replay', async () => {
    const { collect, alice, replay } = setup(() => []);
    await replay.run(alice.conn);
    expect(collect.callsTo(deliveredHop.path)).toEqual([]);
    expect(alice.conn.queuedDuringReplay).toBeUndefined();
  });

  it('releases the live messages at once when collect fails, and tries the replay again', async () => {
    vi.useFakeTimers();
    let up = false;
    const { collect, alice, delivery, replay } = setup(() => {
      if (!up) throw new PeerUnavailable('collect unreachable');
      return [envelope('m1', 'alice')];
    });
    const running = replay.run(alice.conn);
    delivery.forward([envelope('m2', 'alice')]);
    await running;
    expect(alice.socket.messageIds).toEqual(['m2']);
    up = true;
    await vi.advanceTimersByTimeAsync(1000);
    expect(collect.callsTo(unackedHop.path)).toHaveLength(2);
    expect(alice.socket.messageIds).toEqual(['m2', 'm1']);
    expect(collect.callsTo(deliveredHop.path)).toEqual([{ ids: ['m1'] }]);
  });

  it(`gives up after ${REPLAY_ATTEMPTS} attempts, and does not retry for a closed socket`, async () => {
    vi.useFakeTimers();
    const down = () => {
      throw new PeerUnavailable('collect unreachable');
    };
    const { collect, alice, replay } = setup(down);
    await replay.run(alice.conn);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(collect.callsTo(unackedHop.path)).toHaveLength(REPLAY_ATTEMPTS);

    const closed = setup(down);
    closed.alice.socket.terminate();
    await closed.replay.run(closed.alice.conn);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(closed.collect.callsTo(unackedHop.path)).toHaveLength(1);
  });
});
