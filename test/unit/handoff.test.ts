import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { envelopeOf, Handoff } from '../../src/collect/handoff.js';
import { PeerError } from '../../src/core/peers.js';
import { handoffHop, type Hop } from '../../src/protocol/hops.js';
import type { NewMessage, StoredMessage } from '../../src/store/message-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { testLog } from '../support/silent-log.js';

const ulid = monotonicFactory();
const ACK_RETRY = { baseMs: 10_000, maxMs: 60_000 };
const RECHECK_MS = 15_000;

type Answer = (
  ids: string[],
) => { delivered: string[]; unrouted: string[]; replayed?: string[] } | Error;

let store: SqliteStore;
let calls: string[][];

/** A hand-off to a dispatch that answers with `answer`, and 413 to a body over `peerLimit`. */
function handoff(
  answer: Answer,
  maxBatchBytes = 16 * 1024 * 1024,
  peerLimit = Infinity,
  more: { maxBacklogBytes?: number; onDeferred?: (n: number) => void } = {},
): Handoff {
  return new Handoff({
    dispatch: {
      call: (async (hop: Hop<unknown, unknown>, body: string | { messages: { id: string }[] }) => {
        expect(hop).toBe(handoffHop);
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        if (Buffer.byteLength(text) > peerLimit) throw new PeerError(413, 'payload_too_large');
        const ids = (JSON.parse(text) as { messages: { id: string }[] }).messages.map((m) => m.id);
        calls.push(ids);
        const out = answer(ids);
        if (out instanceof Error) throw out;
        return out;
      }) as never,
    },
    store,
    log: testLog('handoff'),
    // better-sqlite3 writes synchronously: the mark is in the store when this returns.
    onDelivered: (ids, at) => void store.markDelivered(ids, new Date(at), ACK_RETRY),
    unroutedRecheckMs: RECHECK_MS,
    maxBatchBytes,
    maxBacklogBytes: more.maxBacklogBytes ?? Infinity,
    onDeferred: more.onDeferred,
  });
}

async function stored(
  count: number,
  to = 'alice',
  payload: unknown = { n: 1 },
): Promise<StoredMessage[]> {
  const now = Date.now();
  const messages: NewMessage[] = Array.from({ length: count }, () => ({
    id: ulid(),
    to,
    payload,
    createdAt: new Date(now),
    expiresAt: new Date(now + 3_600_000),
    nextAttemptAt: new Date(now + 5000),
  }));
  return (await store.insert(messages)).inserted;
}

const near = (at: Date | undefined, expected: number): void => {
  expect(at).toBeDefined();
  expect(Math.abs((at as Date).getTime() - expected)).toBeLessThan(2000);
};

beforeEach(() => {
  store = SqliteStore.open({ path: ':memory:', purgeIntervalMs: 0 });
  calls = [];
});
afterEach(async () => {
  await store.close();
});

describe('Handoff', () => {
  it('marks an envelope as a redelivery when its message was pushed before (delivered), not otherwise', async () => {
    const [m] = await stored(1);
    expect(envelopeOf(m!).redelivery).toBeUndefined();
    await store.markDelivered([m!.id], new Date(), { baseMs: 1000, maxMs: 60_000 });
    const delivered = await store.get(m!.id);
    expect(delivered?.status).toBe('delivered');
    expect(envelopeOf(delivered!).redelivery).toBe(true);
    expect(JSON.parse(JSON.stringify(envelopeOf(delivered!)))).toMatchObject({ redelivery: true });
  });

  it('records each outcome dispatch answers: delivered, unrouted from ingestion, not handed over', async () => {
    const [a, b, c] = await stored(3);
    const h = handoff(() => ({ delivered: [a!.id], unrouted: [b!.id] }));
    const t0 = Date.now();
    h.enqueue([a!, b!, c!], 'ingest');
    await h.drain();

    const da = await store.get(a!.id);
    expect([da?.status, da?.attempts]).toEqual(['delivered', 1]);
    near(da?.nextAttemptAt, t0 + ACK_RETRY.baseMs);
    // Unrouted right after ingestion: looked at once more after UNROUTED_RECHECK.
    const db = await store.get(b!.id);
    expect(db?.status).toBe('pending');
    near(db?.nextAttemptAt, t0 + RECHECK_MS);
    // In neither list: handed off again shortly.
    const dc = await store.get(c!.id);
    expect(dc?.status).toBe('pending');
    near(dc?.nextAttemptAt, t0 + 1000);
  });

  it('writes nothing for a message a replay pushed (the replay marks it): its push counts once', async () => {
    const [m] = await stored(1);
    const h = handoff(() => ({ delivered: [], unrouted: [], replayed: [m!.id] }));
    h.enqueue([m!], 'ingest');
    await h.drain();
    // As stored: not marked delivered a second time, not handed off again shortly.
    const after = await store.get(m!.id);
    expect([after?.status, after?.attempts]).toEqual(['pending', 0]);
    expect(after?.nextAttemptAt).toEqual(m!.nextAttemptAt);
  });

  it('lets an unrouted message from the sweeper wait for its user to connect', async () => {
    const [m] = await stored(1);
    const h = handoff((ids) => ({ delivered: [], unrouted: ids }));
    h.enqueue([m!], 'sweep');
    await h.drain();
    const after = await store.get(m!.id);
    expect(after?.status).toBe('pending');
    expect(after?.nextAttemptAt).toBeUndefined();
  });

  it('hands the messages off again shortly when dispatch cannot be reached', async () => {
    const [m] = await stored(1);
    const h = handoff(() => new Error('no passing dispatch instance'));
    const t0 = Date.now();
    h.enqueue([m!], 'ingest');
    await h.drain();
    near((await store.get(m!.id))?.nextAttemptAt, t0 + 1000);
  });

  it('leaves messages just stored to the sweeper while its backlog is full, and says when it has fallen', async () => {
    const held: (() => void)[] = [];
    let deferred = 0;
    const h = new Handoff({
      dispatch: {
        call: (async (_hop: unknown, body: string) => {
          await new Promise<void>((r) => held.push(r));
          return {
            delivered: JSON.parse(body).messages.map((m: { id: string }) => m.id),
            unrouted: [],
          };
        }) as never,
      },
      store,
      log: testLog('handoff'),
      onDelivered: () => undefined,
      unroutedRecheckMs: RECHECK_MS,
      maxBatchBytes: 20_000,
      maxBacklogBytes: 30_000,
      onDeferred: (n) => (deferred += n),
    });
    const big = await stored(4, 'alice', 'x'.repeat(10_000));
    h.enqueue(big.slice(0, 2), 'ingest');
    h.enqueue(big.slice(2, 3), 'ingest'); // ~30 KB queued or in flight: still within
    h.enqueue(big.slice(3), 'ingest'); // past it: left to the sweeper
    expect(deferred).toBe(1);
    // The sweeper's own messages are queued whatever the backlog: it waits by itself.
    h.enqueue(await stored(1), 'sweep');
    let fallen = false;
    const below = h.backlogBelow(0).then(() => (fallen = true));
    await new Promise((r) => setImmediate(r));
    expect(fallen).toBe(false);
    while (held.length > 0 || !fallen) {
      for (const release of held.splice(0)) release();
      await new Promise((r) => setTimeout(r, 5));
    }
    await below;
    // With the backlog empty, messages just stored are handed off again.
    h.enqueue(await stored(1), 'ingest');
    expect(deferred).toBe(1);
    const draining = h.drain();
    await new Promise((r) => setTimeout(r, 5));
    expect(held).toHaveLength(1);
    held.shift()?.();
    await draining;
  });

  it('sends what it is given in batches of at most 1000, in order', async () => {
    const messages = await stored(2500);
    const h = handoff((ids) => ({ delivered: ids, unrouted: [] }));
    h.enqueue(messages.slice(0, 1200), 'ingest');
    h.enqueue(messages.slice(1200), 'ingest');
    await h.drain();
    expect(Math.max(...calls.map((c) => c.length))).toBe(1000);
    expect(calls.flat()).toEqual(messages.map((m) => m.id));
  });

  it('bounds each hand-off by bytes as well as by count', async () => {
    const messages = await stored(10, 'alice', 'x'.repeat(10_000));
    const h = handoff((ids) => ({ delivered: ids, unrouted: [] }), 35_000);
    h.enqueue(messages, 'ingest');
    await h.drain();
    // About 10.1 KB per envelope: three fit in 35 KB.
    expect(calls.map((c) => c.length)).toEqual([3, 3, 3, 1]);
    expect(calls.flat()).toEqual(messages.map((m) => m.id));
  });

  it('splits a batch dispatch refuses as too large until the parts pass', async () => {
    const messages = await stored(8, 'alice', 'x'.repeat(10_000));
    const h = handoff((ids) => ({ delivered: ids, unrouted: [] }), Infinity, 25_000);
    h.enqueue(messages, 'ingest');
    await h.drain();
    const delivered = calls.filter((c) => c.length <= 2).flat();
    expect(delivered.sort()).toEqual(messages.map((m) => m.id).sort());
    for (const m of messages) expect((await store.get(m.id))?.status).toBe('delivered');
  });

  it('fails a single message that no hand-off can carry, and hands off the rest', async () => {
    const [small] = await stored(1, 'alice', 'small');
    const [huge] = await stored(1, 'alice', 'x'.repeat(50_000));
    const h = handoff((ids) => ({ delivered: ids, unrouted: [] }), Infinity, 20_000);
    h.enqueue([small!, huge!], 'ingest');
    await h.drain();
    expect((await store.get(small!.id))?.status).toBe('delivered');
    const failed = await store.get(huge!.id);
    expect([failed?.status, failed?.failReason]).toEqual([
      'failed',
      'too large for the hand-off hop',
    ]);
  });
});
