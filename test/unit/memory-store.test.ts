import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonicFactory } from 'ulid';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { NewMessage } from '../../src/store/message-store.js';
import { messageStoreContract } from '../store/message-store.contract.js';

messageStoreContract('memory', async () => new MemoryStore());

{
  const dirs = new Map<MemoryStore, string>();
  messageStoreContract(
    'memory, journaled',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'memory-store-contract-'));
      const store = await MemoryStore.open({ journalPath: join(dir, 'journal.jsonl') });
      dirs.set(store, dir);
      return store;
    },
    async (store) => {
      await store.close();
      const dir = dirs.get(store as MemoryStore);
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  );
}

const ulid = monotonicFactory();

function message(to: string, over: Partial<NewMessage> = {}): NewMessage {
  const now = Date.now();
  return {
    id: ulid(),
    to,
    payload: { n: 1 },
    createdAt: new Date(now),
    expiresAt: new Date(now + 60_000),
    ...over,
  };
}

describe('MemoryStore', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sweep drops expired messages and frees their idempotency keys', async () => {
    const store = new MemoryStore();
    const soon = message('u', { key: 'k', expiresAt: new Date(Date.now() + 1000) });
    const later = message('u');
    await store.insert([soon, later]);

    expect(store.sweep(Date.now())).toBe(0);
    expect(store.sweep(Date.now() + 2000)).toBe(1);
    expect(store.size).toBe(1);

    const again = message('u', { key: 'k' });
    const res = await store.insert([again]);
    expect(res.ids).toEqual([again.id]);
    expect((await store.listUnacked('u', 10)).map((m) => m.id)).toEqual([later.id, again.id]);
    await store.close();
  });

  it('an expired message no longer claims its key, even before the sweep', async () => {
    const store = new MemoryStore();
    await store.insert([message('u', { key: 'k', expiresAt: new Date(Date.now() - 1) })]);
    const fresh = message('u', { key: 'k' });
    expect((await store.insert([fresh])).ids).toEqual([fresh.id]);
    await store.close();
  });

  it('sweeps on its timer, and close stops the timer', async () => {
    vi.useFakeTimers();
    const store = new MemoryStore({ sweepIntervalMs: 1000 });
    await store.insert([message('u', { expiresAt: new Date(Date.now() + 500) })]);
    expect(store.size).toBe(1);

    vi.advanceTimersByTime(1000);
    expect(store.size).toBe(0);

    await store.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('rejects an insert that reuses a stored id, storing none of its messages', async () => {
    const store = new MemoryStore();
    const first = message('u');
    await store.insert([first]);

    const fresh = message('u');
    await expect(store.insert([fresh, message('u', { id: first.id })])).rejects.toThrow(first.id);
    expect(await store.get(fresh.id)).toBeUndefined();
    await store.close();
  });

  it('keeps acked messages out of the unacked list after the sweep', async () => {
    const store = new MemoryStore();
    const a = message('u', { expiresAt: new Date(Date.now() + 1000) });
    const b = message('u');
    await store.insert([a, b]);
    await store.markAcked('u', [a.id], new Date());
    store.sweep(Date.now() + 2000);
    expect((await store.listUnacked('u', 10)).map((m) => m.id)).toEqual([b.id]);
    await store.close();
  });
});

describe('MemoryStore redelivery', () => {
  it('a journal is opened with MemoryStore.open, not the constructor', async () => {
    expect(() => new MemoryStore({ journalPath: '/tmp/never' })).toThrow(/MemoryStore.open/);
    const plain = await MemoryStore.open();
    expect(plain.journalStats).toBeUndefined();
    await plain.close();
  });

  it('claimDue over 100k messages picks the earliest due, as a full sort would', async () => {
    const store = new MemoryStore();
    const now = Date.now();
    // Due times in a scrambled order, many of them shared; a third without any.
    const msgs = Array.from({ length: 100_000 }, (_, n) =>
      message(`u${n % 1000}`, {
        nextAttemptAt: n % 3 === 0 ? undefined : new Date(now - ((n * 7919) % 50_000)),
      }),
    );
    await store.insert(msgs);
    const expected = msgs
      .filter((m) => m.nextAttemptAt !== undefined)
      .sort(
        (a, b) => a.nextAttemptAt!.getTime() - b.nextAttemptAt!.getTime() || (a.id < b.id ? -1 : 1),
      )
      .map((m) => m.id);

    const started = performance.now();
    const first = await store.claimDue(new Date(now), 500, 60_000);
    const elapsed = performance.now() - started;
    const second = await store.claimDue(new Date(now), 500, 60_000);

    expect(first.map((m) => m.id)).toEqual(expected.slice(0, 500));
    expect(second.map((m) => m.id)).toEqual(expected.slice(500, 1000));
    // A generous bound: one pass over ~67k candidates takes a few milliseconds.
    expect(elapsed).toBeLessThan(1000);
    await store.close();
  });

  it('the sweep forgets expired messages for claimDue too', async () => {
    const store = new MemoryStore();
    const now = Date.now();
    const soon = message('u', { nextAttemptAt: new Date(now), expiresAt: new Date(now + 1000) });
    const later = message('u', { nextAttemptAt: new Date(now) });
    await store.insert([soon, later]);

    expect(store.sweep(now + 2000)).toBe(1);
    expect((await store.claimDue(new Date(now), 10, 1000)).map((m) => m.id)).toEqual([later.id]);
    await store.close();
  });

  it('a failed message leaves the unacked list and the sweep still finds it', async () => {
    const store = new MemoryStore();
    const a = message('u', { expiresAt: new Date(Date.now() + 1000) });
    const b = message('u');
    await store.insert([a, b]);
    await store.markFailed([a.id], new Date(), 'gave up');
    expect((await store.listUnacked('u', 10)).map((m) => m.id)).toEqual([b.id]);
    expect(store.sweep(Date.now() + 2000)).toBe(1);
    expect((await store.listUnacked('u', 10)).map((m) => m.id)).toEqual([b.id]);
    expect(await store.countByStatus()).toEqual({ pending: 1, delivered: 0, acked: 0, failed: 0 });
    await store.close();
  });
});
