// The behaviour every MessageStore must have, run against each implementation.
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AckRetry, MessageStore, NewMessage } from '../../src/store/message-store.js';

const HOUR = 3_600_000;
const RETRY: AckRetry = { baseMs: 1000, maxMs: 5000 };
const ulid = monotonicFactory();

/** A new message for `to`, created now, expiring in an hour, with a fresh increasing id. */
export function message(to: string, over: Partial<NewMessage> = {}): NewMessage {
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

/**
 * `make` must return a store that holds no messages: claimDue and countByStatus see every
 * message in the store, not only one user's.
 */
export function messageStoreContract(
  name: string,
  make: () => Promise<MessageStore>,
  cleanup: (store: MessageStore) => Promise<void> = (store) => store.close(),
  opts: {
    /** How many due messages the backlog drain test inserts. Default 10,000. */
    backlog?: number;
  } = {},
): void {
  const backlog = opts.backlog ?? 10_000;
  describe(`MessageStore contract: ${name}`, () => {
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
        message(to, { payload: 'just a string ✓', idempotencyKey: key }),
        message(to, { payload: [1, 2, 3] }),
      ];

      const res = await store.insert(msgs);

      expect(res.ids).toEqual(msgs.map((m) => m.id));
      expect(res.inserted.map((m) => m.id)).toEqual(msgs.map((m) => m.id));
      expect(res.inserted.every((m) => m.status === 'pending')).toBe(true);

      // A store may hand the payload's JSON text along (SQLite does): the same payload.
      const { payloadJson, ...first } = (await store.get(msgs[0]!.id))!;
      if (payloadJson !== undefined) expect(JSON.parse(payloadJson)).toEqual(deep);
      expect(first).toEqual({
        id: msgs[0]!.id,
        to,
        payload: deep,
        createdAt: msgs[0]!.createdAt,
        expiresAt: msgs[0]!.expiresAt,
        status: 'pending',
        attempts: 0,
      });
      expect(first?.createdAt).toBeInstanceOf(Date);
      expect(first?.expiresAt).toBeInstanceOf(Date);
      expect(first?.deliveredAt).toBeUndefined();
      expect(first?.ackedAt).toBeUndefined();
      expect(first?.idempotencyKey).toBeUndefined();
      expect(first?.nextAttemptAt).toBeUndefined();

      const second = await store.get(msgs[1]!.id);
      expect(second?.payload).toBe('just a string ✓');
      expect(second?.idempotencyKey).toBe(key);
      expect((await store.get(msgs[2]!.id))?.payload).toEqual([1, 2, 3]);
    });

    it('insert of no messages returns an empty result', async () => {
      expect(await store.insert([])).toEqual({ ids: [], inserted: [], refused: [] });
    });

    it('get of an unknown id returns undefined', async () => {
      expect(await store.get(ulid())).toBeUndefined();
    });

    it('a repeated (key, to) returns the first id and inserts nothing, while the same key for another recipient is a new message', async () => {
      const alice = newUser();
      const bob = newUser();
      const key = newKey();
      const original = message(alice, { idempotencyKey: key, payload: { n: 1 } });
      await store.insert([original]);

      const retry = message(alice, { idempotencyKey: key, payload: { n: 1 } });
      const again = await store.insert([retry]);
      expect(again.ids).toEqual([original.id]);
      expect(again.inserted).toEqual([]);
      expect(await store.get(retry.id)).toBeUndefined();
      expect((await store.get(original.id))?.payload).toEqual({ n: 1 });

      const forBob = message(bob, { idempotencyKey: key });
      const other = await store.insert([forBob]);
      expect(other.ids).toEqual([forBob.id]);
      expect(other.inserted.map((m) => m.id)).toEqual([forBob.id]);
      expect((await store.get(forBob.id))?.to).toBe(bob);
    });

    it('refuses a (key, to) held by a live message with another payload, naming that message, and stores nothing of the call', async () => {
      const to = newUser();
      const key = newKey();
      const original = message(to, { idempotencyKey: key, payload: 'first' });
      await store.insert([original]);

      const bystander = message(to);
      const reused = message(to, { idempotencyKey: key, payload: 'second' });
      const res = await store.insert([bystander, reused]);

      expect(res.ids).toEqual([]);
      expect(res.inserted).toEqual([]);
      expect(res.refused).toEqual([
        { index: 1, reason: expect.stringContaining(original.id), keyHeldBy: original.id },
      ]);
      expect(await store.get(bystander.id)).toBeUndefined();
      expect(await store.get(reused.id)).toBeUndefined();
      expect((await store.get(original.id))?.payload).toBe('first');
      // The same key with the first payload is still a retry.
      const retry = await store.insert([message(to, { idempotencyKey: key, payload: 'first' })]);
      expect(retry.ids).toEqual([original.id]);
    });

    it('of one (key, to) with two payloads in one insert, keeps neither', async () => {
      const to = newUser();
      const key = newKey();
      const a = message(to, { idempotencyKey: key, payload: 'a' });
      const b = message(to, { idempotencyKey: key, payload: 'b' });

      const res = await store.insert([a, b]);

      expect(res.refused).toEqual([{ index: 1, reason: expect.any(String), keyHeldBy: a.id }]);
      expect(await store.get(a.id)).toBeUndefined();
      expect(await store.listUnacked(to, 10)).toEqual([]);
    });

    it('concurrent inserts of one (key, to) with different payloads store one, and refuse the rest naming it', async () => {
      const to = newUser();
      const key = newKey();
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.insert([message(to, { idempotencyKey: key, payload: { i } })]),
        ),
      );

      const stored = await store.listUnacked(to, 100);
      expect(stored).toHaveLength(1);
      const winner = stored[0]!.id;
      expect(results.filter((r) => r.ids[0] === winner)).toHaveLength(1);
      for (const r of results.filter((r) => r.ids.length === 0))
        expect(r.refused).toEqual([{ index: 0, reason: expect.any(String), keyHeldBy: winner }]);
      expect(results.filter((r) => r.ids.length === 0)).toHaveLength(9);
    });

    it('a (key, to) repeated within one insert is stored once and both get its id', async () => {
      const to = newUser();
      const key = newKey();
      const a = message(to, { idempotencyKey: key });
      const plain = message(to);
      const b = message(to, { idempotencyKey: key });

      const res = await store.insert([a, plain, b]);

      expect(res.ids).toEqual([a.id, plain.id, a.id]);
      expect(res.inserted.map((m) => m.id)).toEqual([a.id, plain.id]);
      expect(await store.get(b.id)).toBeUndefined();
    });

    it('concurrent inserts of one (key, to) agree on one id and store it once', async () => {
      const to = newUser();
      const key = newKey();
      const results = await Promise.all(
        Array.from({ length: 20 }, () => store.insert([message(to, { idempotencyKey: key })])),
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

      await store.markDelivered([a.id], t1, RETRY);
      const deliveredA = await store.get(a.id);
      expect(deliveredA?.status).toBe('delivered');
      expect(deliveredA?.deliveredAt).toEqual(t1);
      expect(deliveredA?.attempts).toBe(1);
      expect((await store.get(b.id))?.status).toBe('pending');

      // A second push (a retry, or another socket of the user) records the latest time.
      await store.markDelivered([a.id], t3, RETRY);
      expect((await store.get(a.id))?.deliveredAt).toEqual(t3);
      expect((await store.get(a.id))?.attempts).toBe(2);

      expect(await store.markAcked([{ userId: to, ids: [b.id] }], t2)).toBe(1);
      await store.markDelivered([b.id], t3, RETRY);
      const ackedB = await store.get(b.id);
      expect(ackedB?.status).toBe('acked');
      expect(ackedB?.ackedAt).toEqual(t2);
      // Acked before its delivered mark was written (collect writes marks a moment late
      // and skips those an ack made moot): an ack says it was delivered, once at least.
      expect(ackedB?.deliveredAt).toEqual(t2);
      expect(ackedB?.attempts).toBe(1);
      expect(ackedB?.nextAttemptAt).toBeUndefined();
      // A message whose mark was written keeps its delivery time and count.
      await store.markAcked([{ userId: to, ids: [a.id] }], t3);
      expect((await store.get(a.id))?.deliveredAt).toEqual(t3);
      expect((await store.get(a.id))?.attempts).toBe(2);

      await expect(store.markDelivered([], t3, RETRY)).resolves.toBeUndefined();
      await expect(store.markDelivered([ulid()], t3, RETRY)).resolves.toBeUndefined();
    });

    it('markDelivered schedules the ack retry at base × 2^(attempts − 1), capped at max', async () => {
      const to = newUser();
      const m = message(to, { nextAttemptAt: new Date(Date.now() + 100) });
      await store.insert([m]);
      const t0 = Date.now();

      // 1000, 2000, 4000, then 8000 and 16000 capped at 5000.
      const delays = [1000, 2000, 4000, 5000, 5000];
      for (const [n, delay] of delays.entries()) {
        const at = new Date(t0 + n * 10_000);
        await store.markDelivered([m.id], at, RETRY);
        const got = await store.get(m.id);
        expect(got?.attempts).toBe(n + 1);
        expect(got?.deliveredAt).toEqual(at);
        expect(got?.nextAttemptAt).toEqual(new Date(at.getTime() + delay));
      }

      // Each message backs off by its own attempt count.
      const fresh = message(to);
      await store.insert([fresh]);
      const at = new Date(t0 + 100_000);
      await store.markDelivered([m.id, fresh.id], at, { baseMs: 250, maxMs: 60_000 });
      expect((await store.get(fresh.id))?.nextAttemptAt).toEqual(new Date(at.getTime() + 250));
      // Attempt 6: 250 × 2^5.
      expect((await store.get(m.id))?.nextAttemptAt).toEqual(new Date(at.getTime() + 8000));
    });

    it('markDelivered leaves acked and failed messages alone', async () => {
      const to = newUser();
      const acked = message(to);
      const failed = message(to);
      await store.insert([acked, failed]);
      const t1 = new Date(Date.now() + 1000);
      await store.markDelivered([acked.id, failed.id], t1, RETRY);
      await store.markAcked([{ userId: to, ids: [acked.id] }], t1);
      await store.markFailed([failed.id], t1, 'no ack');
      const before = [await store.get(acked.id), await store.get(failed.id)];

      await store.markDelivered([acked.id, failed.id], new Date(Date.now() + 5000), RETRY);

      expect([await store.get(acked.id), await store.get(failed.id)]).toEqual(before);
      expect(before.map((m) => m?.attempts)).toEqual([1, 1]);
      expect(before.map((m) => m?.nextAttemptAt)).toEqual([undefined, undefined]);
    });

    it('markUnrouted clears nextAttemptAt of pending and delivered messages: they wait for a connect', async () => {
      const to = newUser();
      const due = new Date(Date.now() + 60_000);
      const pending = message(to, { nextAttemptAt: due });
      const delivered = message(to, { nextAttemptAt: due });
      const acked = message(to, { nextAttemptAt: due });
      await store.insert([pending, delivered, acked]);
      await store.markDelivered([delivered.id, acked.id], new Date(Date.now() + 1000), RETRY);
      await store.markAcked([{ userId: to, ids: [acked.id] }], new Date());

      await store.markUnrouted([pending.id, delivered.id, acked.id, ulid()]);

      const p = await store.get(pending.id);
      expect(p?.status).toBe('pending');
      expect(p?.nextAttemptAt).toBeUndefined();
      const d = await store.get(delivered.id);
      expect([d?.status, d?.attempts, d?.nextAttemptAt]).toEqual(['delivered', 1, undefined]);
      // Nothing is due: the sweeper no longer hands them off again and again.
      expect(await store.claimDue(new Date(Date.now() + 3_600_000), 10, 1000)).toEqual([]);
      // A connect replays them.
      expect((await store.listUnacked(to, 10)).map((m) => m.id)).toEqual([
        pending.id,
        delivered.id,
      ]);
      await expect(store.markUnrouted([])).resolves.toBeUndefined();
    });

    it('retryAt sets nextAttemptAt of pending and delivered messages only', async () => {
      const to = newUser();
      const [pending, delivered, acked, failed] = [
        message(to),
        message(to),
        message(to),
        message(to),
      ];
      await store.insert([pending, delivered, acked, failed]);
      const t1 = new Date(Date.now() + 1000);
      await store.markDelivered([delivered.id], t1, RETRY);
      await store.markAcked([{ userId: to, ids: [acked.id] }], t1);
      await store.markFailed([failed.id], t1, 'gave up');
      const at = new Date(Date.now() + 7000);

      await store.retryAt([pending.id, delivered.id, acked.id, failed.id, ulid()], at);

      const got = await Promise.all(
        [pending, delivered, acked, failed].map((m) => store.get(m.id)),
      );
      expect(got.map((m) => m?.nextAttemptAt)).toEqual([at, at, undefined, undefined]);
      expect(got.map((m) => m?.status)).toEqual(['pending', 'delivered', 'acked', 'failed']);
      // markDelivered counts a push; an ack implies one.
      expect(got.map((m) => m?.attempts)).toEqual([0, 1, 1, 0]);
      await expect(store.retryAt([], at)).resolves.toBeUndefined();
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

      expect(await store.markAcked([{ userId: alice, ids: [a1.id, b1.id, ulid()] }], t1)).toBe(1);
      expect((await store.get(b1.id))?.status).toBe('pending');
      const acked = await store.get(a1.id);
      expect(acked?.status).toBe('acked');
      expect(acked?.ackedAt).toEqual(t1);

      await store.markDelivered([a2.id], t1, RETRY);
      expect((await store.get(a2.id))?.nextAttemptAt).toBeDefined();
      // a1 is acked already: only a2 changes, and a1 keeps its first ack time.
      expect(await store.markAcked([{ userId: alice, ids: [a1.id, a2.id] }], t2)).toBe(1);
      expect((await store.get(a1.id))?.ackedAt).toEqual(t1);
      const a2After = await store.get(a2.id);
      expect(a2After?.status).toBe('acked');
      expect(a2After?.deliveredAt).toEqual(t1);
      expect(a2After?.ackedAt).toEqual(t2);
      expect(a2After?.attempts).toBe(1);
      expect(a2After?.nextAttemptAt).toBeUndefined();

      expect(await store.markAcked([{ userId: alice, ids: [] }], t2)).toBe(0);
      expect(await store.markAcked([], t2)).toBe(0);
    });

    it('markAcked takes the acks of many users at once, each user acking only their own', async () => {
      const [alice, bob, carol] = [newUser(), newUser(), newUser()];
      const [a1, b1, b2, c1] = [message(alice), message(bob), message(bob), message(carol)];
      await store.insert([a1, b1, b2, c1]);
      const at = new Date(Date.now() + 1000);
      const acked = await store.markAcked(
        [
          { userId: alice, ids: [a1.id] },
          { userId: bob, ids: [b1.id, b2.id, c1.id] },
          { userId: carol, ids: [] },
        ],
        at,
      );
      expect(acked).toBe(3);
      const got = await Promise.all([a1, b1, b2, c1].map((m) => store.get(m.id)));
      expect(got.map((m) => m?.status)).toEqual(['acked', 'acked', 'acked', 'pending']);
    });

    it('markFailed ends pending and delivered messages; a failed one is not unacked but can still be acked', async () => {
      const to = newUser();
      const pending = message(to, { nextAttemptAt: new Date(Date.now() + 1000) });
      const delivered = message(to);
      const acked = message(to);
      const open = message(to);
      await store.insert([pending, delivered, acked, open]);
      const t1 = new Date(Date.now() + 1000);
      const t2 = new Date(Date.now() + 2000);
      const t3 = new Date(Date.now() + 3000);
      await store.markDelivered([delivered.id], t1, RETRY);
      await store.markAcked([{ userId: to, ids: [acked.id] }], t1);

      await store.markFailed(
        [pending.id, delivered.id, acked.id, ulid()],
        t2,
        'no ack after 5 pushes',
      );

      for (const m of [pending, delivered]) {
        const got = await store.get(m.id);
        expect(got?.status).toBe('failed');
        expect(got?.failedAt).toEqual(t2);
        expect(got?.failReason).toBe('no ack after 5 pushes');
        expect(got?.nextAttemptAt).toBeUndefined();
      }
      expect((await store.get(delivered.id))?.attempts).toBe(1);
      expect((await store.get(delivered.id))?.deliveredAt).toEqual(t1);
      const stillAcked = await store.get(acked.id);
      expect(stillAcked?.status).toBe('acked');
      expect(stillAcked?.failedAt).toBeUndefined();
      expect((await store.listUnacked(to, 10)).map((m) => m.id)).toEqual([open.id]);

      // A failed message is marked again neither by a later failure nor by a push.
      await store.markFailed([pending.id], t3, 'again');
      expect((await store.get(pending.id))?.failReason).toBe('no ack after 5 pushes');

      // A late ack still counts.
      expect(await store.markAcked([{ userId: to, ids: [delivered.id] }], t3)).toBe(1);
      const late = await store.get(delivered.id);
      expect(late?.status).toBe('acked');
      expect(late?.ackedAt).toEqual(t3);
      expect(late?.attempts).toBe(1);
      expect((await store.listUnacked(to, 10)).map((m) => m.id)).toEqual([open.id]);
      await expect(store.markFailed([], t3, 'x')).resolves.toBeUndefined();
    });

    it('claimDue returns due pending and delivered messages, earliest due first, and leases them', async () => {
      const to = newUser();
      const now = new Date();
      const ago = (ms: number): Date => new Date(now.getTime() - ms);
      const lease = 30_000;
      // The ids sort in this order: `tie` shares `second`'s due time and comes after it.
      const third = message(to, { nextAttemptAt: ago(1000) });
      const first = message(to, { nextAttemptAt: ago(3000) });
      const second = message(to, { nextAttemptAt: ago(2000) });
      const tie = message(to, { nextAttemptAt: ago(2000) });
      const exactlyNow = message(to, { nextAttemptAt: now });
      const later = message(to, { nextAttemptAt: new Date(now.getTime() + 60_000) });
      const waiting = message(to);
      const acked = message(to, { nextAttemptAt: ago(5000) });
      const failed = message(to, { nextAttemptAt: ago(5000) });
      const expired = message(to, {
        nextAttemptAt: ago(5000),
        expiresAt: new Date(Date.now() - 1000),
      });
      const other = message(newUser(), { nextAttemptAt: ago(1500) });
      await store.insert([third, first, second, tie, exactlyNow, later, waiting]);
      await store.insert([acked, failed, expired, other]);
      await store.markAcked([{ userId: to, ids: [acked.id] }], now);
      await store.markFailed([failed.id], now, 'gave up');
      // A delivered message whose ack is overdue is due as well.
      await store.markDelivered([second.id], ago(3000), RETRY);
      expect((await store.get(second.id))?.nextAttemptAt).toEqual(ago(2000));

      const claimed = await store.claimDue(now, 100, lease);

      expect(claimed.map((m) => m.id)).toEqual([
        first.id,
        second.id,
        tie.id,
        other.id,
        third.id,
        exactlyNow.id,
      ]);
      const leased = new Date(now.getTime() + lease);
      expect(claimed.every((m) => m.nextAttemptAt?.getTime() === leased.getTime())).toBe(true);
      expect(claimed[1]).toMatchObject({ status: 'delivered', attempts: 1, to });
      expect(claimed[1]).toEqual(await store.get(second.id));
      expect((await store.get(first.id))?.nextAttemptAt).toEqual(leased);
      expect((await store.get(later.id))?.nextAttemptAt).toEqual(later.nextAttemptAt);

      // Leased: not due again until the lease runs out.
      expect(await store.claimDue(now, 100, lease)).toEqual([]);
      expect(await store.claimDue(new Date(leased.getTime() - 1), 100, lease)).toEqual([]);
      // Now all due at the same time: in id order.
      const again = await store.claimDue(leased, 100, lease);
      expect(again.map((m) => m.id)).toEqual(
        [third, first, second, tie, exactlyNow, other].map((m) => m.id),
      );
    });

    it('claimDue honours limit, leaving the rest due', async () => {
      const to = newUser();
      const now = new Date();
      const msgs = Array.from({ length: 5 }, (_, n) =>
        message(to, { nextAttemptAt: new Date(now.getTime() - 10_000 + n * 1000) }),
      );
      // Inserted latest due first: the order comes from nextAttemptAt, not from insertion.
      await store.insert([...msgs].reverse());

      expect(await store.claimDue(now, 0, 1000)).toEqual([]);
      expect((await store.claimDue(now, 2, 1000)).map((m) => m.id)).toEqual([
        msgs[0]!.id,
        msgs[1]!.id,
      ]);
      expect((await store.claimDue(now, 2, 1000)).map((m) => m.id)).toEqual([
        msgs[2]!.id,
        msgs[3]!.id,
      ]);
      expect((await store.claimDue(now, 2, 1000)).map((m) => m.id)).toEqual([msgs[4]!.id]);
      expect(await store.claimDue(now, 2, 1000)).toEqual([]);
    });

    it('claimDue leases every message of a large claim, each returned once', async () => {
      const to = newUser();
      const now = new Date();
      const lease = 60_000;
      // More than one statement of a batch update takes (the SQLite store's chunk of 1,000).
      const msgs = Array.from({ length: 2_500 }, () =>
        message(to, { nextAttemptAt: new Date(now.getTime() - 1000) }),
      );
      await store.insert(msgs);

      const claimed = await store.claimDue(now, 3_000, lease);
      expect(new Set(claimed.map((m) => m.id)).size).toBe(2_500);
      expect(claimed.every((m) => m.nextAttemptAt?.getTime() === now.getTime() + lease)).toBe(true);
      const later = new Date(now.getTime() + lease - 1);
      expect(await store.claimDue(later, 3_000, lease)).toEqual([]);
      expect(await store.claimDue(new Date(now.getTime() + lease), 3_000, lease)).toHaveLength(
        2_500,
      );
    });

    it('countByStatus counts the messages in each status, expired ones gone once purged', async () => {
      expect(await store.countByStatus()).toEqual({
        pending: 0,
        delivered: 0,
        acked: 0,
        failed: 0,
      });
      const to = newUser();
      const msgs = Array.from({ length: 7 }, () => message(to));
      const expired = message(to, { expiresAt: new Date(Date.now() - 1) });
      await store.insert([...msgs, expired]);
      const at = new Date();
      await store.markDelivered([msgs[0]!.id, msgs[1]!.id, msgs[2]!.id], at, RETRY);
      await store.markAcked([{ userId: to, ids: [msgs[2]!.id, msgs[3]!.id] }], at);
      await store.markFailed([msgs[4]!.id], at, 'gave up');
      // An expired message counts at most until it is purged.
      await store.purge(new Date());

      expect(await store.countByStatus()).toEqual({
        pending: 2,
        delivered: 2,
        acked: 2,
        failed: 1,
      });
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
      await store.markDelivered([middle.id], new Date(), RETRY);
      await store.markAcked([{ userId: to, ids: [acked.id] }], new Date());

      const all = await store.listUnacked(to, 100);
      expect(all.map((m) => m.id)).toEqual([oldest.id, tie.id, middle.id, newest.id]);
      expect(all.map((m) => m.status)).toEqual(['pending', 'pending', 'delivered', 'pending']);
      expect(all[0]).toEqual(await store.get(oldest.id));

      expect((await store.listUnacked(to, 2)).map((m) => m.id)).toEqual([oldest.id, tie.id]);
      // Pages: after a message, in the same order, ties on createdAt broken by id.
      const after = (m: { id: string; createdAt: Date }) => ({ id: m.id, createdAt: m.createdAt });
      expect((await store.listUnacked(to, 2, after(oldest))).map((m) => m.id)).toEqual([
        tie.id,
        middle.id,
      ]);
      expect((await store.listUnacked(to, 2, after(tie))).map((m) => m.id)).toEqual([
        middle.id,
        newest.id,
      ]);
      expect(await store.listUnacked(to, 2, after(newest))).toEqual([]);
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

    it('hostile payloads are each stored and read back exactly, or refused alone with nothing stored', async () => {
      const to = newUser();
      let deep: unknown = 'bottom';
      for (let i = 0; i < 500; i++) deep = { d: deep };
      let deepArray: unknown = [];
      for (let i = 0; i < 500; i++) deepArray = [deepArray];
      const hostile: Record<string, unknown> = {
        nulInKey: { 'a\u0000b': 1, '\u0000': { '\u0000\u0000': 'x\u0000y' } },
        deep,
        deepArray,
        dollarAndDot: { $set: { 'a.b': 1 }, $where: 'x', '.': { '..': '$' } },
        proto: JSON.parse('{"__proto__": {"polluted": true}, "constructor": 1}'),
        unicode: { '\ud83d\ude80': 'é\u2028\u2029', lone: '\ud800', 'k\ufeff': '\uffff' },
        numbers: [0, -0.5, 1e308, -1e-308, 2 ** 53 + 2, 123456789.12345679],
        big: { text: 'x'.repeat(1024 * 1024) },
        nullPayload: null,
        emptyString: '',
      };
      const entries = Object.entries(hostile);
      const msgs = entries.map(([, payload]) => message(to, { payload }));
      const plain = message(to);

      const results = await Promise.all([
        ...msgs.map((m) => store.insert([m])),
        store.insert([plain]),
      ]);

      const refusedLabels: string[] = [];
      for (const [i, [label, payload]] of entries.entries()) {
        const r = results[i]!;
        const got = await store.get(msgs[i]!.id);
        if (r.refused.length > 0) {
          refusedLabels.push(label);
          expect(r, label).toMatchObject({ ids: [], inserted: [], refused: [{ index: 0 }] });
          expect(got, label).toBeUndefined();
        } else {
          expect(r.ids, label).toEqual([msgs[i]!.id]);
          expect(got?.payload, label).toEqual(payload);
          // toEqual ignores -0 vs 0 and own __proto__ keys: compare the JSON too.
          expect(JSON.stringify(got?.payload), label).toBe(JSON.stringify(payload));
        }
      }
      // Only what is past a store's own limits may be refused; keys are never a reason.
      expect(refusedLabels.filter((l) => !['deep', 'deepArray', 'big'].includes(l))).toEqual([]);
      expect(results.at(-1)!.ids).toEqual([plain.id]);
      expect((await store.get(plain.id))?.payload).toEqual(plain.payload);
    });

    it('a refused message refuses its own call only, and nothing of that call is stored', async () => {
      const to = newUser();
      const stored = message(to);
      await store.insert([stored]);
      const good = message(to);
      const unserializable = message(to, { payload: { n: 10n } });
      const keptOut = message(to);
      const sameId = message(to, { id: stored.id, payload: 'another' });
      const alsoGood = message(to, { idempotencyKey: newKey() });

      // Concurrent: the store may write them in one batch.
      const [a, b, c, d] = await Promise.all([
        store.insert([good]),
        store.insert([unserializable]),
        store.insert([keptOut, sameId]),
        store.insert([alsoGood]),
      ]);

      expect(a).toMatchObject({ ids: [good.id], refused: [] });
      expect(d).toMatchObject({ ids: [alsoGood.id], refused: [] });
      expect(b).toMatchObject({ ids: [], inserted: [], refused: [{ index: 0 }] });
      expect(c).toMatchObject({ ids: [], inserted: [], refused: [{ index: 1 }] });
      expect(c.refused[0]!.reason).toMatch(/already stored/);
      expect(await store.get(keptOut.id)).toBeUndefined();
      expect(await store.get(unserializable.id)).toBeUndefined();
      expect((await store.get(stored.id))?.payload).toEqual(stored.payload);
      expect((await store.listUnacked(to, 10)).map((m) => m.id)).toEqual([
        stored.id,
        good.id,
        alsoGood.id,
      ]);
    });

    it('an expired holder of a (key, to) is ignored: the repeat is a new message', async () => {
      const to = newUser();
      const key = newKey();
      const old = message(to, { idempotencyKey: key, expiresAt: new Date(Date.now() - 1) });
      await store.insert([old]);

      const fresh = message(to, { idempotencyKey: key });
      const res = await store.insert([fresh]);

      expect(res.ids).toEqual([fresh.id]);
      expect(res.inserted.map((m) => m.id)).toEqual([fresh.id]);
      expect((await store.get(fresh.id))?.idempotencyKey).toBe(key);
      // And the new message holds the key from now on.
      expect((await store.insert([message(to, { idempotencyKey: key })])).ids).toEqual([fresh.id]);
    });

    it('purge deletes expired messages and acked ones past the acked retention, nothing else', async () => {
      const to = newUser();
      const now = Date.now();
      const expired = message(to, { expiresAt: new Date(now - 1) });
      const ackedLongAgo = message(to);
      const ackedJustNow = message(to);
      const failed = message(to);
      const delivered = message(to);
      const pending = message(to);
      await store.insert([expired, ackedLongAgo, ackedJustNow, failed, delivered, pending]);
      // The default retention is 1 h: an ack 2 h ago is past it.
      await store.markAcked([{ userId: to, ids: [ackedLongAgo.id] }], new Date(now - 2 * HOUR));
      await store.markAcked([{ userId: to, ids: [ackedJustNow.id] }], new Date(now));
      await store.markFailed([failed.id], new Date(now), 'gave up');
      await store.markDelivered([delivered.id], new Date(now), RETRY);

      let purged = 0;
      for (let n = await store.purge(new Date(now)); n > 0; n = await store.purge(new Date(now))) {
        purged += n;
      }

      expect(purged).toBeGreaterThanOrEqual(2);
      expect(await store.get(ackedLongAgo.id)).toBeUndefined();
      const left = await Promise.all(
        [ackedJustNow, failed, delivered, pending].map((m) => store.get(m.id)),
      );
      expect(left.map((m) => m?.status)).toEqual(['acked', 'failed', 'delivered', 'pending']);
    });

    it("a user's unacked list stays in (createdAt, id) order across calls and status changes", async () => {
      const to = newUser();
      const t0 = new Date(Date.now() - 10_000);
      // Same createdAt for all (one ingest millisecond): the id decides. Inserted in five
      // concurrent calls, newest ids first.
      const msgs = Array.from({ length: 50 }, () => message(to, { createdAt: t0 }));
      const older = message(to, { createdAt: new Date(t0.getTime() - 1) });
      const calls = [0, 1, 2, 3, 4].map((c) => msgs.slice(c * 10, c * 10 + 10).reverse());
      await Promise.all(calls.reverse().map((batch) => store.insert(batch)));
      await store.insert([older]);
      const expected = [older, ...msgs].map((m) => m.id);

      expect((await store.listUnacked(to, 100)).map((m) => m.id)).toEqual(expected);

      const at = new Date();
      await store.markDelivered(
        msgs.filter((_, i) => i % 3 === 0).map((m) => m.id),
        at,
        RETRY,
      );
      await store.markAcked(
        [{ userId: to, ids: msgs.filter((_, i) => i % 5 === 0).map((m) => m.id) }],
        at,
      );
      const ackedIds = new Set(msgs.filter((_, i) => i % 5 === 0).map((m) => m.id));
      expect((await store.listUnacked(to, 100)).map((m) => m.id)).toEqual(
        expected.filter((id) => !ackedIds.has(id)),
      );
      expect((await store.listUnacked(to, 7)).map((m) => m.id)).toEqual(
        expected.filter((id) => !ackedIds.has(id)).slice(0, 7),
      );
    });

    it(`a backlog of ${backlog} due messages is drained in pages, each message claimed once, in due order`, async () => {
      const now = Date.now();
      const users = Array.from({ length: 100 }, newUser);
      const chunk = 5000;
      for (let start = 0; start < backlog; start += chunk) {
        const msgs = Array.from({ length: Math.min(chunk, backlog - start) }, (_, i) =>
          message(users[(start + i) % users.length]!, {
            // Scrambled due times, many shared.
            nextAttemptAt: new Date(now - 1 - (((start + i) * 7919) % 100_000)),
            payload: start + i,
          }),
        );
        await store.insert(msgs);
      }

      const seen = new Set<string>();
      const twice: string[] = [];
      let last = -Infinity;
      let pages = 0;
      const lease = 600_000;
      for (;;) {
        const page = await store.claimDue(new Date(now), 1000, lease);
        if (page.length === 0) break;
        pages++;
        for (const m of page) {
          if (seen.has(m.id)) twice.push(m.id);
          seen.add(m.id);
        }
        // Pages follow each other in due order: each starts where the last one ended.
        const due = page
          .map((m) => ((m.payload as number) * 7919) % 100_000)
          .map((d) => now - 1 - d);
        expect(due[0]!).toBeGreaterThanOrEqual(last);
        last = due.at(-1)!;
      }
      expect(twice).toEqual([]);
      expect(seen.size).toBe(backlog);
      expect(pages).toBe(Math.ceil(backlog / 1000));
      // Leased, not lost: due again only once the lease runs out.
      expect(await store.claimDue(new Date(now + lease - 1), 10, lease)).toEqual([]);
      expect(await store.claimDue(new Date(now + lease), 10, lease)).toHaveLength(10);
    }, 120_000);
  });
}
