import { monotonicFactory } from 'ulid';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { NewMessage } from '../../src/store/message-store.js';
import { messageStoreContract } from '../store/message-store.contract.js';

messageStoreContract('memory', async () => new MemoryStore());

describe('MemoryStore', () => {
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
