import { randomBytes } from 'node:crypto';
import { MongoClient, type CommandStartedEvent } from 'mongodb';
import { monotonicFactory } from 'ulid';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { MessageStore, NewMessage } from '../../src/store/message-store.js';
import { MongoStore, type MongoStoreOptions } from '../../src/store/mongo-store.js';
import { messageStoreContract } from '../store/message-store.contract.js';

const url = process.env.MONGODB_URL ?? '';
if (!url) {
  console.warn(
    'MongoDB store contract suite skipped: MONGODB_URL is not set (set it to a mongod 6.0+ to run it)',
  );
}

const dbName = `push_cluster_test_${randomBytes(6).toString('hex')}`;

describe.skipIf(!url)('MongoStore', () => {
  afterAll(async () => {
    const client = new MongoClient(url);
    try {
      await client.db(dbName).dropDatabase();
    } finally {
      await client.close();
    }
  });

  {
    // claimDue and countByStatus see the whole collection: each contract test gets a database.
    let next = 0;
    const dbs = new Map<MessageStore, string>();
    messageStoreContract(
      'mongodb',
      async () => {
        const db = `${dbName}_c${next++}`;
        // Counts fresh on every call: the contract checks them right after each change.
        const store = await MongoStore.connect(url, db, { countRefreshMs: 0 });
        dbs.set(store, db);
        return store;
      },
      async (store) => {
        await store.close();
        const db = dbs.get(store);
        if (db === undefined) return;
        const client = new MongoClient(url);
        try {
          await client.db(db).dropDatabase();
        } finally {
          await client.close();
        }
      },
    );
  }

  describe('group commit', () => {
    const ulid = monotonicFactory();
    const open: { store: MongoStore; dbs: string[] }[] = [];

    function message(over: Partial<NewMessage> = {}): NewMessage {
      const now = Date.now();
      return {
        id: ulid(),
        to: `user-${ulid()}`,
        payload: { n: 1 },
        createdAt: new Date(now),
        expiresAt: new Date(now + 3_600_000),
        ...over,
      };
    }

    /** A store on its own monitored client; `inserts` counts insert commands on `messages`. */
    async function monitoredStore(
      opts: MongoStoreOptions = {},
      db: string = dbName,
    ): Promise<{ store: MongoStore; client: MongoClient; inserts: () => number }> {
      const client = new MongoClient(url, { monitorCommands: true });
      let count = 0;
      client.on('commandStarted', (e: CommandStartedEvent) => {
        if (
          e.commandName === 'insert' &&
          e.databaseName === db &&
          e.command.insert === 'messages'
        ) {
          count++;
        }
      });
      const store = new MongoStore(client, db, opts);
      open.push({ store, dbs: db === dbName ? [] : [db] });
      await store.ensureIndexes();
      count = 0;
      return { store, client, inserts: () => count };
    }

    afterEach(async () => {
      for (const { store, dbs } of open.splice(0)) {
        if (dbs.length > 0) {
          const client = new MongoClient(url);
          try {
            for (const db of dbs) await client.db(db).dropDatabase();
          } finally {
            await client.close();
          }
        }
        await store.close();
      }
    });

    it('500 concurrent inserts share one insert command', async () => {
      const { store, inserts } = await monitoredStore();
      const msgs = Array.from({ length: 500 }, () => message());

      const results = await Promise.all(msgs.map((m) => store.insert([m])));

      expect(results.map((r) => r.ids[0])).toEqual(msgs.map((m) => m.id));
      // All 500 calls arrive within the flush delay and under maxBatch: one round trip.
      expect(inserts()).toBe(1);
      const stored = await Promise.all(msgs.map((m) => store.get(m.id)));
      expect(stored.every((m) => m?.status === 'pending')).toBe(true);
    });

    it('a full batch is written at once without waiting for the delay, and close writes the rest', async () => {
      const { store, inserts } = await monitoredStore({ flushDelayMs: 600_000, maxBatch: 100 });
      const msgs = Array.from({ length: 250 }, () => message());

      const pending = msgs.map((m) => store.insert([m]));
      // Only the two full batches can settle while the last 50 wait for the (long) delay.
      await Promise.all(pending.slice(0, 200));
      expect(inserts()).toBe(2);

      await store.close();
      const rest = await Promise.all(pending.slice(200));
      expect(rest.map((r) => r.ids[0])).toEqual(msgs.slice(200).map((m) => m.id));
      expect(inserts()).toBe(3);
      await expect(store.insert([message()])).rejects.toThrow(/closed/);
    });

    it('in one batch, repeats of a stored key and of each other resolve to one id', async () => {
      const { store, inserts } = await monitoredStore();
      const to = `user-${ulid()}`;
      const stored = message({ to, idempotencyKey: 'stored' });
      await store.insert([stored]);
      const before = inserts();

      const results = await Promise.all([
        store.insert([message({ to, idempotencyKey: 'stored' })]),
        store.insert([message({ to, idempotencyKey: 'new' })]),
        store.insert([
          message({ to, idempotencyKey: 'stored' }),
          message({ to, idempotencyKey: 'new' }),
        ]),
        store.insert([message({ to, idempotencyKey: 'new' })]),
      ]);

      expect(inserts() - before).toBe(1);
      const newId = results[1]!.ids[0]!;
      expect(results.map((r) => r.ids)).toEqual([
        [stored.id],
        [newId],
        [stored.id, newId],
        [newId],
      ]);
      expect(results.map((r) => r.inserted.length)).toEqual([0, 1, 0, 0]);
      expect(await store.listUnacked(to, 10)).toHaveLength(2);
    });

    it('a document the server refuses refuses only the call it belongs to, storing none of that call', async () => {
      const db = `${dbName}_refuse`;
      const { store, client } = await monitoredStore({}, db);
      // Writes are checked against the validator; its error (121) is not a duplicate key.
      await client.db(db).command({
        collMod: 'messages',
        validator: { to: { $ne: 'refused-user' } },
        validationLevel: 'strict',
        validationAction: 'error',
      });
      const good = Array.from({ length: 5 }, () => message());
      const bad = message({ to: 'refused-user' });
      const mixedGood = message();
      const mixedBad = message({ to: 'refused-user' });

      const results = await Promise.all([
        ...good.map((m) => store.insert([m])),
        store.insert([bad]),
        store.insert([mixedGood, mixedBad]),
      ]);

      expect(results.slice(0, 5).map((r) => r.ids)).toEqual(good.map((m) => [m.id]));
      expect(results[5]).toMatchObject({ ids: [], inserted: [], refused: [{ index: 0 }] });
      expect(results[6]).toMatchObject({ ids: [], inserted: [], refused: [{ index: 1 }] });
      expect(results[6]!.refused[0]!.reason).toContain('121');
      for (const m of good) expect(await store.get(m.id)).toBeDefined();
      for (const m of [bad, mixedGood, mixedBad]) expect(await store.get(m.id)).toBeUndefined();
    });

    it('countByStatus recounts at most every countRefreshMs, in the background', async () => {
      const db = `${dbName}_counts`;
      const { store, client } = await monitoredStore({ countRefreshMs: 60_000 }, db);
      let counts = 0;
      client.on('commandStarted', (e: CommandStartedEvent) => {
        if (e.commandName === 'aggregate' && e.databaseName === db) counts++;
      });
      await store.insert([message(), message()]);

      expect((await store.countByStatus()).pending).toBe(2);
      const afterFirst = counts;
      await store.insert([message()]);
      // Within the refresh interval: the last counts, and no command at all.
      expect((await store.countByStatus()).pending).toBe(2);
      expect(counts).toBe(afterFirst);
      expect(afterFirst).toBeGreaterThan(0);
    });

    it('ping resolves against a reachable server', async () => {
      const { store } = await monitoredStore();
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('markDelivered is one update command, and counts from 0 on documents without attempts', async () => {
      const { store, client } = await monitoredStore();
      const updates: unknown[] = [];
      client.on('commandStarted', (e: CommandStartedEvent) => {
        if (e.commandName === 'update' && e.databaseName === dbName) updates.push(e.command);
      });
      const fresh = message();
      await store.insert([fresh]);
      // A document written before redelivery existed: no attempts, no nextAttemptAt.
      const legacy = {
        _id: ulid(),
        to: 'legacy',
        payload: 1,
        createdAt: new Date(),
        status: 'pending',
        expiresAt: new Date(Date.now() + 3_600_000),
      };
      await client.db(dbName).collection<{ _id: string }>('messages').insertOne(legacy);
      const at = new Date();

      await store.markDelivered([fresh.id, legacy._id], at, { baseMs: 1000, maxMs: 5000 });

      expect(updates).toHaveLength(1);
      for (const id of [fresh.id, legacy._id]) {
        const got = await store.get(id);
        expect(got?.attempts).toBe(1);
        expect(got?.nextAttemptAt).toEqual(new Date(at.getTime() + 1000));
      }
    });

    it('each query is answered from its index', async () => {
      const { store, client } = await monitoredStore();
      const coll = client.db(dbName).collection('messages');
      const indexes = await coll.indexes();
      expect(indexes.find((i) => i.name === 'nextAttemptAt_1__id_1')).toMatchObject({
        key: { nextAttemptAt: 1, _id: 1 },
        partialFilterExpression: { nextAttemptAt: { $exists: true } },
      });
      await store.insert([message({ nextAttemptAt: new Date(Date.now() - 1000) })]);
      const now = new Date();
      const plans = [
        await coll
          .find({
            nextAttemptAt: { $exists: true, $lte: now },
            status: { $in: ['pending', 'delivered'] },
            expiresAt: { $gt: now },
          })
          .sort({ nextAttemptAt: 1, _id: 1 })
          .limit(10)
          .explain(),
        await coll
          .find({ to: 'u', status: { $in: ['pending', 'delivered'] }, expiresAt: { $gt: now } })
          .sort({ createdAt: 1, _id: 1 })
          .limit(10)
          .explain(),
        await coll.find({ $or: [{ key: { $eq: 'k', $type: 'string' }, to: 'u' }] }).explain(),
      ];
      for (const plan of plans) {
        const text = JSON.stringify(plan.queryPlanner.winningPlan);
        expect(text).toContain('IXSCAN');
        // Sorted by the index, not in memory: a page costs its size, not the backlog's.
        expect(text).not.toContain('"SORT"');
      }
    });

    it('two stores claiming at once each get a message at most once', async () => {
      const a = await monitoredStore();
      const b = await monitoredStore();
      const msgs = Array.from({ length: 50 }, () =>
        message({ nextAttemptAt: new Date(Date.now() - 60_000) }),
      );
      await a.store.insert(msgs);
      const mine = new Set(msgs.map((m) => m.id));
      const now = new Date();

      const [fromA, fromB] = await Promise.all([
        a.store.claimDue(now, 1000, 30_000),
        b.store.claimDue(new Date(now.getTime() + 1), 1000, 30_000),
      ]);

      const ids = [...fromA, ...fromB].map((m) => m.id).filter((id) => mine.has(id));
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(50);
    });
  });
});
