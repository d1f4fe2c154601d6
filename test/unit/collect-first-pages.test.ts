import { describe, expect, it } from 'vitest';
import { firstPages } from '../../src/collect/first-pages.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

const HOUR = 3_600_000;

/** A private store holding `count` messages of `bytes` for each given user. */
async function storeWith(backlogs: Record<string, number>, bytes: number): Promise<SqliteStore> {
  const store = SqliteStore.open({ path: ':memory:', purgeIntervalMs: 0 });
  let n = 0;
  for (const [to, count] of Object.entries(backlogs)) {
    for (let i = 0; i < count; i++) {
      const id = `m${String(n++).padStart(6, '0')}`;
      const payload = 'x'.repeat(bytes);
      await store.insert([
        { id, to, payload, createdAt: new Date(), expiresAt: new Date(Date.now() + HOUR) },
      ]);
    }
  }
  return store;
}

describe('firstPages (collect: the first replay page of each of a burst of connects)', () => {
  it("answers each user's page in request order, empty for a user with nothing unacked", async () => {
    const store = await storeWith({ ann: 2, bob: 1 }, 10);
    const { pages } = await firstPages(store, ['bob', 'nobody', 'ann'], 500, 1 << 20);
    expect(pages.map((p) => p?.map((m) => m.to))).toEqual([['bob'], [], ['ann', 'ann']]);
    await store.close();
  });

  it('answers null for the users past the byte budget, but always the first page', async () => {
    // 1,000-byte payloads: ann's page alone is over a 2,000-byte budget.
    const store = await storeWith({ ann: 3, bob: 1, cy: 1 }, 1000);
    const { pages } = await firstPages(store, ['ann', 'bob', 'cy'], 500, 2000);
    expect(pages[0]).toHaveLength(3);
    expect(pages.slice(1)).toEqual([null, null]);
    await store.close();
  });

  it('answers null past the budget across groups of concurrent reads too', async () => {
    const users = Array.from({ length: 40 }, (_, i) => `u${i}`);
    const store = await storeWith(Object.fromEntries(users.map((u) => [u, 1])), 1000);
    const { pages } = await firstPages(store, users, 500, 20_000);
    const served = pages.filter((p) => p !== null);
    expect(pages).toHaveLength(40);
    // Each frame is a little over 1,000 bytes: about 19 fit, and no page after a null.
    expect(served.length).toBeGreaterThan(15);
    expect(served.length).toBeLessThan(20);
    expect(pages.indexOf(null)).toBe(served.length);
    await store.close();
  });
});
