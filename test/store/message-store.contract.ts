// The behaviour every MessageStore must have, run against each implementation.
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { MessageStore, NewMessage } from '../../src/store/message-store.js';

const HOUR = 3_600_000;

export function messageStoreContract(
  name: string,
  make: () => Promise<MessageStore>,
  cleanup: (store: MessageStore) => Promise<void> = (store) => store.close(),
): void {
  describe(`MessageStore contract: ${name}`, () => {
    const ulid = monotonicFactory();
    let store: MessageStore;

    beforeEach(async () => {
      store = await make();
    });
    afterEach(async () => {
      await cleanup(store);
    });

    // Fresh users and keys in every test, so implementations that share a database across
    // tests (MongoDB) cannot see one test's messages from another.
    const newUser = (): string => `user-${ulid()}`;
    const newKey = (): string => `key-${ulid()}`;

    function message(to: string, over: Partial<NewMessage> = {}): NewMessage {
      const now = Date.now();
      return {
        id: ulid(),
        to,
        payload: { text: 'hello' },
        createdAt: new Date(now),
        expiresAt: new Date(now + HOUR),
        ...over,
      };
    }

    it('insert returns ids in input order and get returns the stored fields', async () => {
      const to = newUser();
      const deep = {
        text: 'héllo wörld — 你好 🚀',
        nested: { list: [1, 2.5, 'three', { four: [true, false, null] }], empty: {} },
        big: 2 ** 40,
      };
      const key = newKey();
      const msgs = [
        message(to, { payload: deep }),
        message(to, { payload: 'just a string ✓', key }),
        message(to, { payload: [1, 2, 3] }),
      ];

      const res = await store.insert(msgs);

      expect(res.ids).toEqual(msgs.map((m) => m.id));
      expect(res.inserted.map((m) => m.id)).toEqual(msgs.map((m) => m.id));
      expect(res.inserted.every((m) => m.status === 'pending')).toBe(true);

      const first = await store.get(msgs[0]!.id);
      expect(first).toEqual({
        id: msgs[0]!.id,
        to,
        payload: deep,
        createdAt: msgs[0]!.createdAt,
        expiresAt: msgs[0]!.expiresAt,
        status: 'pending',
      });
      expect(first?.createdAt).toBeInstanceOf(Date);
      expect(first?.expiresAt).toBeInstanceOf(Date);
      expect(first?.deliveredAt).toBeUndefined();
      expect(first?.ackedAt).toBeUndefined();
      expect(first?.key).toBeUndefined();

      const second = await store.get(msgs[1]!.id);
      expect(second?.payload).toBe('just a string ✓');
      expect(second?.key).toBe(key);
      expect((await store.get(msgs[2]!.id))?.payload).toEqual([1, 2, 3]);
    });

    it('insert of no messages returns an empty result', async () => {
      expect(await store.insert([])).toEqual({ ids: [], inserted: [] });
    });

    it('get of an unknown id returns undefined', async () => {
      expect(await store.get(ulid())).toBeUndefined();
    });

    it('a repeated (key, to) returns the first id and inserts nothing, while the same key for another recipient is a new message', async () => {
      const alice = newUser();
      const bob = newUser();
      const key = newKey();
      const original = message(alice, { key, payload: 'first' });
      await store.insert([original]);

      const retry = message(alice, { key, payload: 'second' });
      const again = await store.insert([retry]);
      expect(again.ids).toEqual([original.id]);
      expect(again.inserted).toEqual([]);
      expect(await store.get(retry.id)).toBeUndefined();
      expect((await store.get(original.id))?.payload).toBe('first');

      const forBob = message(bob, { key });
      const other = await store.insert([forBob]);
      expect(other.ids).toEqual([forBob.id]);
      expect(other.inserted.map((m) => m.id)).toEqual([forBob.id]);
      expect((await store.get(forBob.id))?.to).toBe(bob);
    });

    it('a (key, to) repeated within one insert is stored once and both get its id', async () => {
      const to = newUser();
      const key = newKey();
      const a = message(to, { key });
      const plain = message(to);
      const b = message(to, { key });

      const res = await store.insert([a, plain, b]);

      expect(res.ids).toEqual([a.id, plain.id, a.id]);
      expect(res.inserted.map((m) => m.id)).toEqual([a.id, plain.id]);
      expect(await store.get(b.id)).toBeUndefined();
    });

    it('concurrent inserts of one (key, to) agree on one id and store it once', async () => {
      const to = newUser();
      const key = newKey();
      const results = await Promise.all(
        Array.from({ length: 20 }, () => store.insert([message(to, { key })])),
      );

      const ids = new Set(results.map((r) => r.ids[0]));
      expect(ids.size).toBe(1);
      expect(results.flatMap((r) => r.inserted)).toHaveLength(1);
      expect(await store.listUnacked(to, 100)).toHaveLength(1);
    });

    it('markDelivered moves pending to delivered but never un-acks', async () => {
      const to = newUser();
      const a = message(to);
      const b = message(to);
      await store.insert([a, b]);
      const t1 = new Date(Date.now() + 1000);
      const t2 = new Date(Date.now() + 2000);
      const t3 = new Date(Date.now() + 3000);

      await store.markDelivered([a.id], t1);
      const deliveredA = await store.get(a.id);
      expect(deliveredA?.status).toBe('delivered');
      expect(deliveredA?.deliveredAt).toEqual(t1);
      expect((await store.get(b.id))?.status).toBe('pending');

      // A second delivery (another socket of the user) keeps the first time.
      await store.markDelivered([a.id], t3);
      expect((await store.get(a.id))?.deliveredAt).toEqual(t1);

      expect(await store.markAcked(to, [b.id], t2)).toBe(1);
      await store.markDelivered([b.id], t3);
      const ackedB = await store.get(b.id);
      expect(ackedB?.status).toBe('acked');
      expect(ackedB?.ackedAt).toEqual(t2);
      expect(ackedB?.deliveredAt).toBeUndefined();

      await expect(store.markDelivered([], t3)).resolves.toBeUndefined();
      await expect(store.markDelivered([ulid()], t3)).resolves.toBeUndefined();
    });

    it('markAcked only acks messages of that user and counts changes', async () => {
      const alice = newUser();
      const bob = newUser();
      const a1 = message(alice);
      const a2 = message(alice);
      const b1 = message(bob);
      await store.insert([a1, a2, b1]);
      const t1 = new Date(Date.now() + 1000);
      const t2 = new Date(Date.now() + 2000);

      expect(await store.markAcked(alice, [a1.id, b1.id, ulid()], t1)).toBe(1);
      expect((await store.get(b1.id))?.status).toBe('pending');
      const acked = await store.get(a1.id);
      expect(acked?.status).toBe('acked');
      expect(acked?.ackedAt).toEqual(t1);

      await store.markDelivered([a2.id], t1);
      // a1 is acked already: only a2 changes, and a1 keeps its first ack time.
      expect(await store.markAcked(alice, [a1.id, a2.id], t2)).toBe(1);
      expect((await store.get(a1.id))?.ackedAt).toEqual(t1);
      const a2After = await store.get(a2.id);
      expect(a2After?.status).toBe('acked');
      expect(a2After?.deliveredAt).toEqual(t1);
      expect(a2After?.ackedAt).toEqual(t2);

      expect(await store.markAcked(alice, [], t2)).toBe(0);
    });

    it('listUnacked returns pending and delivered, not acked, oldest first, honours limit, excludes expired', async () => {
      const to = newUser();
      const other = newUser();
      const t0 = Date.now() - 60_000;
      const at = (offset: number): Date => new Date(t0 + offset);
      // Inserted out of order on purpose; `tie` shares `oldest`'s createdAt and sorts after it by id.
      const newest = message(to, { createdAt: at(3000) });
      const oldest = message(to, { createdAt: at(0) });
      const middle = message(to, { createdAt: at(2000) });
      const acked = message(to, { createdAt: at(1000) });
      const expired = message(to, { createdAt: at(500), expiresAt: new Date(Date.now() - 1000) });
      const tie = message(to, { createdAt: at(0) });
      const notMine = message(other, { createdAt: at(100) });
      await store.insert([newest, oldest, middle]);
      await store.insert([acked, expired, tie, notMine]);
      await store.markDelivered([middle.id], new Date());
      await store.markAcked(to, [acked.id], new Date());

      const all = await store.listUnacked(to, 100);
      expect(all.map((m) => m.id)).toEqual([oldest.id, tie.id, middle.id, newest.id]);
      expect(all.map((m) => m.status)).toEqual(['pending', 'pending', 'delivered', 'pending']);
      expect(all[0]).toEqual(await store.get(oldest.id));

      expect((await store.listUnacked(to, 2)).map((m) => m.id)).toEqual([oldest.id, tie.id]);
      expect(await store.listUnacked(to, 0)).toEqual([]);
      expect(await store.listUnacked(newUser(), 10)).toEqual([]);
    });

    it('an expired message is neither listed nor returned by get', async () => {
      const to = newUser();
      const expired = message(to, { expiresAt: new Date(Date.now() - 1) });
      const live = message(to);
      await store.insert([expired, live]);

      expect(await store.get(expired.id)).toBeUndefined();
      expect((await store.listUnacked(to, 10)).map((m) => m.id)).toEqual([live.id]);
    });

    it('concurrent inserts all resolve with distinct ids and all are readable', async () => {
      const to = newUser();
      const msgs = Array.from({ length: 200 }, (_, n) => message(to, { payload: { n } }));

      const results = await Promise.all(msgs.map((m) => store.insert([m])));

      const ids = results.map((r) => r.ids[0]);
      expect(ids).toEqual(msgs.map((m) => m.id));
      expect(new Set(ids).size).toBe(200);
      expect(results.every((r) => r.inserted.length === 1)).toBe(true);
      const got = await Promise.all(msgs.map((m) => store.get(m.id)));
      expect(got.map((m) => m?.payload)).toEqual(msgs.map((m) => m.payload));
      const listed = await store.listUnacked(to, 1000);
      expect(listed.map((m) => m.id)).toEqual(msgs.map((m) => m.id));
    });

    it('returned messages are copies: changing them does not change the store', async () => {
      const to = newUser();
      const m = message(to, { payload: { count: 1 } });
      const res = await store.insert([m]);
      const inserted = res.inserted[0]!;
      inserted.status = 'acked';
      (m.payload as { count: number }).count = 2;

      const got = await store.get(m.id);
      expect(got?.status).toBe('pending');
      expect(got?.payload).toEqual({ count: 1 });

      (got!.payload as { count: number }).count = 3;
      got!.createdAt.setTime(0);
      const listed = await store.listUnacked(to, 10);
      expect(listed[0]?.payload).toEqual({ count: 1 });
      expect(listed[0]?.createdAt).toEqual(m.createdAt);
    });
  });
}
