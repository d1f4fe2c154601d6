import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HandoffOrigin } from '../../src/collect/handoff.js';
import { RedeliverySweeper } from '../../src/collect/redelivery-sweeper.js';
import type { LeaderLock } from '../../src/core/leader.js';
import { sweepBatch } from '../../src/core/tuning.js';
import type { StoredMessage } from '../../src/store/message-store.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { testLog } from '../support/silent-log.js';

const ulid = monotonicFactory();
const RETRY = { baseMs: 1, maxMs: 1 };

let store: SqliteStore;
let handedOff: { ids: string[]; origin: HandoffOrigin }[];
let counts: { failed: number; redelivered: number };

function sweeper(
  o: { batchSize?: number; backlogBelow?: () => Promise<void> } = {},
): RedeliverySweeper {
  return new RedeliverySweeper({
    store,
    handoff: {
      enqueue: (messages: StoredMessage[], origin: HandoffOrigin) =>
        void handedOff.push({ ids: messages.map((m) => m.id), origin }),
      backlogBelow: o.backlogBelow ?? (async () => undefined),
    },
    batchSize: o.batchSize ?? 1000,
    backlogBytes: 0,
    log: testLog('sweeper'),
    intervalMs: 60_000,
    maxAttempts: 3,
    onFailed: (n) => (counts.failed += n),
    onRedelivered: (n) => (counts.redelivered += n),
  });
}

/** A lock this test holds, or not. */
const lock = (isLeader: boolean): LeaderLock =>
  ({ isLeader, start: () => undefined, stop: async () => undefined }) as unknown as LeaderLock;

/** A message pushed `attempts` times, now due (its ack is overdue). */
async function pushed(attempts: number): Promise<string> {
  const now = Date.now();
  const id = ulid();
  await store.insert([
    { id, to: 'alice', payload: 1, createdAt: new Date(now), expiresAt: new Date(now + 3_600_000) },
  ]);
  for (let i = 0; i < attempts; i++) await store.markDelivered([id], new Date(now - 1000), RETRY);
  return id;
}

beforeEach(() => {
  store = SqliteStore.open({ path: ':memory:', purgeIntervalMs: 0 });
  handedOff = [];
  counts = { failed: 0, redelivered: 0 };
});
afterEach(async () => {
  await store.close();
});

describe('RedeliverySweeper', () => {
  it('hands overdue messages off again and fails those pushed MAX_ATTEMPTS times', async () => {
    const again = await pushed(2);
    const spent = await pushed(3);
    const s = sweeper();
    s.start(lock(true));
    await s.sweep();
    await s.stop();
    expect(handedOff).toEqual([{ ids: [again], origin: 'sweep' }]);
    expect(counts).toEqual({ failed: 1, redelivered: 1 });
    const failed = await store.get(spent);
    expect(failed?.status).toBe('failed');
    expect(failed?.failReason).toContain('3');
  });

  it('does nothing while another instance holds the lock', async () => {
    await pushed(1);
    const s = sweeper();
    s.start(lock(false));
    await s.sweep();
    await s.stop();
    expect(handedOff).toEqual([]);
  });

  it('drains a backlog larger than one claim in one sweep', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 1500; i++) ids.push(await pushed(1));
    const s = sweeper();
    s.start(lock(true));
    await s.sweep();
    await s.stop();
    expect(handedOff.flatMap((h) => h.ids).sort()).toEqual(ids.sort());
  });

  it('claims the next batch only once the hand-off backlog of the last has fallen', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push(await pushed(1));
    const waits: (() => void)[] = [];
    const s = sweeper({
      batchSize: 10,
      backlogBelow: () => new Promise<void>((r) => waits.push(r)),
    });
    s.start(lock(true));
    const sweeping = s.sweep();
    const settle = () => new Promise((r) => setTimeout(r, 20));
    await settle();
    // One claim of 10, handed off; the sweep waits for it.
    expect(handedOff.map((h) => h.ids.length)).toEqual([10]);
    waits.shift()?.();
    await settle();
    expect(handedOff.map((h) => h.ids.length)).toEqual([10, 10]);
    waits.shift()?.();
    await settle();
    waits.shift()?.();
    await sweeping;
    await s.stop();
    expect(handedOff.map((h) => h.ids.length)).toEqual([10, 10, 5]);
    expect(handedOff.flatMap((h) => h.ids).sort()).toEqual(ids.sort());
  });
});

describe('sweepBatch', () => {
  it('claims fewer messages when payloads may be large, never fewer than 10', () => {
    expect(sweepBatch(64 * 1024)).toBe(1000);
    expect(sweepBatch(1024 * 1024)).toBe(64);
    expect(sweepBatch(64 * 1024 * 1024)).toBe(10);
  });
});
