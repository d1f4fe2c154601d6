import { afterEach, describe, expect, it, vi } from 'vitest';
import { PeerUnavailable } from '../../src/core/peers.js';
import { REPLAY_PAGE } from '../../src/core/tuning.js';
import { deliveredHop, unackedHop, type Envelope } from '../../src/protocol/hops.js';
import type { Connection } from '../../src/push/connection.js';
import { DeliveredBatcher } from '../../src/push/delivered-batcher.js';
import { Delivery } from '../../src/push/delivery.js';
import { Hub } from '../../src/push/hub.js';
import { Replay } from '../../src/push/replay.js';
import { testLog } from '../support/silent-log.js';
import { envelope, FakePeers, fakeConnection } from './push-fakes.js';

afterEach(() => vi.useRealTimers());

/** A node with one new socket of alice, a collect answering `unacked`, and delivery. */
function setup(unacked: (body: UnackedRequest) => Envelope[] | Promise<Envelope[]>) {
  const collect = new FakePeers(async (path, body) =>
    path === unackedHop.path ? { messages: await unacked(body as UnackedRequest) } : {},
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
  return {
    collect,
    alice,
    hub,
    delivery,
    // Each first page asked alone, as when a batch had no room for it: the paging is what
    // these tests check (test/unit/push-first-pages.test.ts checks the batching).
    replay: new Replay({
      collect,
      firstPages: { ask: async () => null },
      delivered: new DeliveredBatcher({ collect, log }),
      log,
      lowWaterBytes: 1000,
    }),
  };
}

interface UnackedRequest {
  userId: string;
  limit: number;
  after?: { id: string; createdAt: string };
}

/** A store of `count` unacked messages for alice (ids m0000…), served page by page. */
function backlog(count: number): (body: UnackedRequest) => Envelope[] {
  const all = Array.from({ length: count }, (_, i) => ({
    ...envelope(`m${String(i).padStart(4, '0')}`, 'alice'),
    createdAt: '2026-01-01T00:00:00.000Z',
  }));
  return ({ limit, after }) => {
    const from = after ? all.findIndex((m) => m.id === after.id) + 1 : 0;
    return all.slice(from, from + limit);
  };
}

describe('Replay (on connect)', () => {
  it('pushes the unacked messages first, then the live ones that came meanwhile, each once and counted once', async () => {
    let answer: (m: Envelope[]) => void = () => undefined;
    const { collect, alice, delivery, replay } = setup(
      () => new Promise<Envelope[]>((resolve) => (answer = resolve)),
    );
    const running = replay.run(alice.conn);
    // Live messages forwarded while collect is asked: m2 is also in the replay. The forward
    // hop's answer counts both; the replay must not count m2 again.
    expect(delivery.forward([envelope('m3', 'alice'), envelope('m2', 'alice')])).toEqual({
      delivered: ['m3', 'm2'],
      replayed: [],
    });
    expect(alice.socket.sent).toEqual([]);
    await vi.waitFor(() => expect(collect.callsTo(unackedHop.path)).toHaveLength(1));
    answer([envelope('m1', 'alice'), envelope('m2', 'alice')]);
    await running;
    expect(alice.socket.messageIds).toEqual(['m1', 'm2', 'm3']);
    expect(collect.callsTo(unackedHop.path)).toEqual([{ userId: 'alice', limit: REPLAY_PAGE }]);
    await vi.waitFor(() => expect(collect.callsTo(deliveredHop.path)).toEqual([{ ids: ['m1'] }]));
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
    await vi.advanceTimersByTimeAsync(0);
    expect(alice.socket.messageIds).toEqual(['m2']);
    up = true;
    await vi.advanceTimersByTimeAsync(1000);
    await running;
    expect(collect.callsTo(unackedHop.path)).toHaveLength(2);
    expect(alice.socket.messageIds).toEqual(['m2', 'm1']);
    await vi.advanceTimersByTimeAsync(1);
    expect(collect.callsTo(deliveredHop.path)).toEqual([{ ids: ['m1'] }]);
  });

  it('keeps trying with backoff while the socket is open, and stops once it closes', async () => {
    vi.useFakeTimers();
    const { collect, alice, replay } = setup(() => {
      throw new PeerUnavailable('collect unreachable');
    });
    const running = replay.run(alice.conn);
    // 1 + 2 + 4 + 8 + 16 + 30 + 30 s: seven tries after the first.
    await vi.advanceTimersByTimeAsync(91_000);
    expect(collect.callsTo(unackedHop.path)).toHaveLength(8);
    alice.socket.terminate();
    await vi.advanceTimersByTimeAsync(120_000);
    await running;
    expect(collect.callsTo(unackedHop.path)).toHaveLength(8);
  });

  it('pages through a backlog larger than a page, in order, every message marked delivered once', async () => {
    const { collect, alice, replay } = setup(backlog(REPLAY_PAGE * 2 + 7));
    await replay.run(alice.conn);
    const ids = alice.socket.messageIds;
    expect(ids).toHaveLength(REPLAY_PAGE * 2 + 7);
    expect(ids).toEqual([...ids].sort());
    expect(collect.callsTo(unackedHop.path)).toHaveLength(3);
    // Pages pushed close together may share a request: what counts is each id once.
    const marked = () =>
      collect.callsTo(deliveredHop.path).flatMap((b) => (b as { ids: string[] }).ids);
    await vi.waitFor(() => expect(marked()).toHaveLength(ids.length));
    expect(marked()).toEqual(ids);
  });

  it('asks for the next page only once the socket has sent most of the last one', async () => {
    vi.useFakeTimers();
    const { collect, alice, replay } = setup(backlog(REPLAY_PAGE + 1));
    alice.socket.bufferedAmount = 5000;
    const running = replay.run(alice.conn);
    await vi.advanceTimersByTimeAsync(500);
    expect(collect.callsTo(unackedHop.path)).toHaveLength(1);
    alice.socket.bufferedAmount = 0;
    await vi.advanceTimersByTimeAsync(20);
    await running;
    expect(collect.callsTo(unackedHop.path)).toHaveLength(2);
    expect(alice.socket.messageIds).toHaveLength(REPLAY_PAGE + 1);
  });

  it('neither queues nor counts again a live copy that arrives after its page went out, while the replay goes on', async () => {
    vi.useFakeTimers();
    const { collect, alice, delivery, replay } = setup(backlog(REPLAY_PAGE + 1));
    // The socket holds its first page once it is sent: the replay waits before asking for the
    // next one.
    const send = alice.socket.send.bind(alice.socket);
    alice.socket.send = (data: string) => {
      send(data);
      if (alice.socket.messageIds.length === REPLAY_PAGE) alice.socket.bufferedAmount = 5000;
    };
    const running = replay.run(alice.conn);
    await vi.advanceTimersByTimeAsync(100);
    expect(alice.socket.messageIds).toHaveLength(REPLAY_PAGE);
    expect(delivery.forward([envelope('m0000', 'alice')])).toEqual({
      delivered: [],
      replayed: ['m0000'],
    });
    alice.socket.bufferedAmount = 0;
    await vi.advanceTimersByTimeAsync(20);
    await running;
    const ids = alice.socket.messageIds;
    expect(ids.filter((id) => id === 'm0000')).toHaveLength(1);
    expect(ids).toHaveLength(REPLAY_PAGE + 1);
    await vi.advanceTimersByTimeAsync(100);
    const marked = collect.callsTo(deliveredHop.path).flatMap((b) => (b as { ids: string[] }).ids);
    expect(marked).toEqual(ids);
  });

  it('replays again when the user is bound anew, and runs once more when asked during a replay', async () => {
    let stored = [envelope('m1', 'alice')];
    const { collect, alice, hub, replay } = setup(() => stored);
    await replay.run(alice.conn);
    expect(alice.socket.messageIds).toEqual(['m1']);
    // The binding lapsed while m2 was routed: nobody got it.
    stored = [envelope('m1', 'alice'), envelope('m2', 'alice')];
    replay.again(hub.connectionsOf('alice') ?? []);
    replay.again(hub.connectionsOf('alice') ?? []);
    await vi.waitFor(() => expect(collect.callsTo(unackedHop.path)).toHaveLength(3));
    expect(alice.socket.messageIds.filter((id) => id === 'm2')).toHaveLength(2);
  });

  it('does not ask collect at all for a closed socket', async () => {
    const { collect, alice, replay } = setup(() => [envelope('m1', 'alice')]);
    alice.socket.terminate();
    await replay.run(alice.conn);
    expect(collect.callsTo(unackedHop.path)).toEqual([]);
  });

  it('never lets a page of large messages overflow the socket: it waits for the socket to send', async () => {
    vi.useFakeTimers();
    const big = 'x'.repeat(400);
    const { alice, replay } = setup(() =>
      Array.from({ length: 20 }, (_, i) =>
        envelope(`m${String(i).padStart(2, '0')}`, 'alice', big),
      ),
    );
    // The socket holds what it was sent until the network takes it, 1 KB every 10 ms.
    const send = alice.socket.send.bind(alice.socket);
    let highest = 0;
    alice.socket.send = (data: string) => {
      send(data);
      alice.socket.bufferedAmount += data.length;
      highest = Math.max(highest, alice.socket.bufferedAmount);
    };
    const network = setInterval(() => {
      alice.socket.bufferedAmount = Math.max(0, alice.socket.bufferedAmount - 1000);
    }, 10);
    const running = replay.run(alice.conn);
    await vi.advanceTimersByTimeAsync(2000);
    await running;
    clearInterval(network);
    expect(alice.socket.messageIds).toHaveLength(20);
    // Low water is 1000 bytes: it never got past one frame over it.
    expect(highest).toBeLessThan(1000 + 600);
    expect(alice.socket.closed).toBeUndefined();
  });
});
