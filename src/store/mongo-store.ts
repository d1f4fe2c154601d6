import {
  MongoBulkWriteError,
  MongoClient,
  MongoInvalidArgumentError,
  type Collection,
  type Db,
  type MongoClientOptions,
  type WithId,
  type WriteError,
} from 'mongodb';
import type { MessageStatus } from '../protocol/public-api.js';
import type {
  AckRetry,
  InsertResult,
  MessageStore,
  NewMessage,
  StoredMessage,
} from './message-store.js';

interface MessageDoc {
  _id: string;
  to: string;
  payload: unknown;
  createdAt: Date;
  status: MessageStatus;
  /** Absent from documents written before redelivery existed: read as 0. */
  attempts?: number;
  nextAttemptAt?: Date;
  deliveredAt?: Date;
  ackedAt?: Date;
  failedAt?: Date;
  failReason?: string;
  key?: string;
  expiresAt: Date;
}

export interface MongoStoreOptions {
  /** Longest an insert waits for others to share its write. Default 2 ms. */
  flushDelayMs?: number;
  /** A batch holding this many messages is written at once. Default 1000. */
  maxBatch?: number;
}

/** One message that the database refused; `code` is the server's. */
export class MessageWriteError extends Error {
  override readonly name = 'MessageWriteError';
  constructor(
    readonly messageId: string,
    readonly code: number | undefined,
    detail: string,
    cause?: unknown,
  ) {
    super(`message ${messageId} was not stored: ${detail}`, { cause });
  }
}

interface Waiter {
  messages: NewMessage[];
  resolve(result: InsertResult): void;
  reject(error: unknown): void;
}

const COLLECTION = 'messages';
const DUPLICATE_KEY = 11000;
const OPEN: MessageStatus[] = ['pending', 'delivered'];
/** Caps the exponent of the ack retry backoff, as ackRetryDelay does for the memory store. */
const MAX_BACKOFF_EXPONENT = 40;

function pairKey(key: string, to: string): string {
  return key + '\u0000' + to;
}

function toDoc(m: NewMessage): MessageDoc {
  const doc: MessageDoc = {
    _id: m.id,
    to: m.to,
    payload: m.payload,
    createdAt: m.createdAt,
    status: 'pending',
    attempts: 0,
    expiresAt: m.expiresAt,
  };
  if (m.nextAttemptAt !== undefined) doc.nextAttemptAt = m.nextAttemptAt;
  // Only a string key may enter the unique index: a stored null would collide with every other.
  if (m.key !== undefined) doc.key = m.key;
  return doc;
}

function toMessage(doc: WithId<MessageDoc>): StoredMessage {
  const m: StoredMessage = {
    id: doc._id,
    to: doc.to,
    payload: doc.payload,
    createdAt: doc.createdAt,
    status: doc.status,
    attempts: doc.attempts ?? 0,
    expiresAt: doc.expiresAt,
  };
  if (doc.nextAttemptAt) m.nextAttemptAt = doc.nextAttemptAt;
  if (doc.deliveredAt) m.deliveredAt = doc.deliveredAt;
  if (doc.ackedAt) m.ackedAt = doc.ackedAt;
  if (doc.failedAt) m.failedAt = doc.failedAt;
  if (typeof doc.failReason === 'string') m.failReason = doc.failReason;
  if (typeof doc.key === 'string') m.key = doc.key;
  return m;
}

/**
 * The write errors of a bulk insert when they tell exactly which documents failed, or undefined
 * when the outcome of any document is unknown: the driver gave up mid-way (network, server
 * selection) or the write concern was not met, so even the documents without an error may be
 * lost on failover.
 */
function perDocumentErrors(err: unknown): readonly WriteError[] | undefined {
  if (!(err instanceof MongoBulkWriteError)) return undefined;
  if (err.err !== undefined || err.result?.getWriteConcernError() !== undefined) return undefined;
  const list: readonly WriteError[] = Array.isArray(err.writeErrors)
    ? err.writeErrors
    : [err.writeErrors as WriteError];
  return list.length > 0 ? list : undefined;
}

/**
 * Messages in MongoDB. Concurrent inserts share one insertMany (group commit): with
 * w:majority + j:true each write waits for replication and a journal flush, so writing one
 * request at a time would cap ingestion at a few hundred requests a second.
 */
export class MongoStore implements MessageStore {
  readonly kind = 'mongodb' as const;

  private readonly client: MongoClient;
  private readonly db: Db;
  private readonly messages: Collection<MessageDoc>;
  private readonly flushDelayMs: number;
  private readonly maxBatch: number;

  private batch: Waiter[] = [];
  private batchCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly writing = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;

  constructor(client: MongoClient, dbName: string, opts: MongoStoreOptions = {}) {
    this.client = client;
    this.db = client.db(dbName);
    this.messages = this.db.collection<MessageDoc>(COLLECTION, {
      writeConcern: { w: 'majority', j: true },
    });
    this.flushDelayMs = opts.flushDelayMs ?? 2;
    this.maxBatch = Math.max(1, opts.maxBatch ?? 1000);
  }

  static async connect(
    url: string,
    dbName: string,
    opts: MongoStoreOptions & { clientOptions?: MongoClientOptions } = {},
  ): Promise<MongoStore> {
    const client = new MongoClient(url, opts.clientOptions);
    await client.connect();
    const store = new MongoStore(client, dbName, opts);
    try {
      await store.ensureIndexes();
    } catch (err) {
      await client.close();
      throw err;
    }
    return store;
  }

  /** Creates the collection's indexes; a no-op when they already exist as specified. */
  async ensureIndexes(): Promise<void> {
    await this.messages.createIndexes([
      { key: { to: 1, status: 1, createdAt: 1, _id: 1 } },
      // The TTL monitor deletes about once a minute, so reads still filter on expiresAt.
      { key: { expiresAt: 1 }, expireAfterSeconds: 0 },
      {
        key: { key: 1, to: 1 },
        unique: true,
        partialFilterExpression: { key: { $type: 'string' } },
      },
      // claimDue: only messages that something waits for carry a nextAttemptAt.
      {
        key: { nextAttemptAt: 1 },
        partialFilterExpression: { nextAttemptAt: { $exists: true } },
      },
    ]);
  }

  insert(messages: NewMessage[]): Promise<InsertResult> {
    if (messages.length === 0) return Promise.resolve({ ids: [], inserted: [] });
    if (this.closing) return Promise.reject(new Error('MongoStore is closed'));
    return new Promise<InsertResult>((resolve, reject) => {
      this.batch.push({ messages, resolve, reject });
      this.batchCount += messages.length;
      if (this.batchCount >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.flushDelayMs);
    });
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const doc = await this.messages.findOne({ _id: id, expiresAt: { $gt: new Date() } });
    return doc ? toMessage(doc) : undefined;
  }

  async markDelivered(ids: string[], at: Date, retry: AckRetry): Promise<void> {
    if (ids.length === 0) return;
    // One pipeline update: the delay depends on each document's own attempt count. Expressions
    // in one $set stage read the fields as they were, so '$attempts' is the count before this
    // push: the exponent attempts − 1 of the new count.
    const before = { $ifNull: ['$attempts', 0] };
    await this.messages.updateMany({ _id: { $in: ids }, status: { $in: OPEN } }, [
      {
        $set: {
          status: 'delivered',
          deliveredAt: at,
          attempts: { $add: [before, 1] },
          nextAttemptAt: {
            $add: [
              at,
              {
                $min: [
                  retry.maxMs,
                  {
                    $multiply: [
                      retry.baseMs,
                      { $pow: [2, { $min: [before, MAX_BACKOFF_EXPONENT] }] },
                    ],
                  },
                ],
              },
            ],
          },
        },
      },
    ]);
  }

  async markUnrouted(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.messages.updateMany(
      { _id: { $in: ids }, status: 'pending' },
      { $unset: { nextAttemptAt: '' } },
    );
  }

  async retryAt(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.messages.updateMany(
      { _id: { $in: ids }, status: { $in: OPEN } },
      { $set: { nextAttemptAt: at } },
    );
  }

  async markAcked(userId: string, ids: string[], at: Date): Promise<number> {
    if (ids.length === 0) return 0;
    const res = await this.messages.updateMany(
      { _id: { $in: ids }, to: userId, status: { $ne: 'acked' } },
      { $set: { status: 'acked', ackedAt: at }, $unset: { nextAttemptAt: '' } },
    );
    return res.modifiedCount;
  }

  async markFailed(ids: string[], at: Date, reason: string): Promise<void> {
    if (ids.length === 0) return;
    await this.messages.updateMany(
      { _id: { $in: ids }, status: { $in: OPEN } },
      {
        $set: { status: 'failed', failedAt: at, failReason: reason },
        $unset: { nextAttemptAt: '' },
      },
    );
  }

  async claimDue(now: Date, limit: number, leaseMs: number): Promise<StoredMessage[]> {
    // limit(0) would mean "no limit" to MongoDB.
    if (limit <= 0) return [];
    const docs = await this.messages
      .find({
        // $exists restates the partial index's filter, so the planner surely can use it.
        nextAttemptAt: { $exists: true, $lte: now },
        status: { $in: OPEN },
        expiresAt: { $gt: new Date() },
      })
      .sort({ nextAttemptAt: 1, _id: 1 })
      .limit(limit)
      .toArray();
    if (docs.length === 0) return [];
    const ids = docs.map((d) => d._id);
    const lease = new Date(now.getTime() + leaseMs);
    const res = await this.messages.updateMany(
      { _id: { $in: ids }, nextAttemptAt: { $lte: now } },
      { $set: { nextAttemptAt: lease } },
    );
    let claimed = docs;
    if (res.modifiedCount < docs.length) {
      // Some changed between the find and the update: acked, failed, or claimed by another
      // sweeper (whose lease is past `now`). Return only those that carry this lease.
      const mine = await this.messages
        .find({ _id: { $in: ids }, nextAttemptAt: lease }, { projection: { _id: 1 } })
        .toArray();
      const kept = new Set(mine.map((d) => d._id));
      claimed = docs.filter((d) => kept.has(d._id));
    }
    return claimed.map((d) => ({ ...toMessage(d), nextAttemptAt: lease }));
  }

  async listUnacked(userId: string, limit: number): Promise<StoredMessage[]> {
    // limit(0) would mean "no limit" to MongoDB.
    if (limit <= 0) return [];
    const docs = await this.messages
      .find({
        to: userId,
        status: { $in: ['pending', 'delivered'] },
        expiresAt: { $gt: new Date() },
      })
      .sort({ createdAt: 1, _id: 1 })
      .limit(limit)
      .toArray();
    return docs.map(toMessage);
  }

  async countByStatus(): Promise<Record<MessageStatus, number>> {
    const counts: Record<MessageStatus, number> = { pending: 0, delivered: 0, acked: 0, failed: 0 };
    const groups = await this.messages
      .aggregate<{ _id: MessageStatus; n: number }>([
        // The TTL monitor deletes about once a minute: leave out what it has not reached yet.
        { $match: { expiresAt: { $gt: new Date() } } },
        { $group: { _id: '$status', n: { $sum: 1 } } },
      ])
      .toArray();
    for (const g of groups) {
      if (g._id in counts) counts[g._id] = g.n;
    }
    return counts;
  }

  async ping(): Promise<void> {
    await this.db.command({ ping: 1 });
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.writing]);
    await this.client.close();
  }

  private flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const waiters = this.batch;
    if (waiters.length === 0) return;
    this.batch = [];
    this.batchCount = 0;
    const done: Promise<void> = this.write(waiters)
      // write() settles every waiter itself; this only guards against a bug leaving one hanging.
      .catch((err: unknown) => waiters.forEach((w) => w.reject(err)))
      .finally(() => this.writing.delete(done));
    this.writing.add(done);
  }

  /** Writes one batch and settles each of its waiters; never rejects. */
  private async write(waiters: Waiter[]): Promise<void> {
    // One document per keyless message and per distinct (key, to): a second message with the
    // same pair in the batch would only fail on the unique index, so it shares the first's doc.
    const docs: MessageDoc[] = [];
    const slots: { doc: number; own: boolean }[][] = [];
    const docByPair = new Map<string, number>();
    for (const w of waiters) {
      const mine: { doc: number; own: boolean }[] = [];
      for (const m of w.messages) {
        if (m.key !== undefined) {
          const pair = pairKey(m.key, m.to);
          const earlier = docByPair.get(pair);
          if (earlier !== undefined) {
            mine.push({ doc: earlier, own: false });
            continue;
          }
          docByPair.set(pair, docs.length);
        }
        mine.push({ doc: docs.length, own: true });
        docs.push(toDoc(m));
      }
      slots.push(mine);
    }

    const failed = new Map<number, unknown>();
    const duplicates = new Set<number>();
    try {
      await this.messages.insertMany(docs, { ordered: false });
    } catch (err) {
      const writeErrors = perDocumentErrors(err);
      if (!writeErrors) {
        // The driver refuses such a batch before sending anything (an oversized or
        // unserializable document): write each request alone so one bad request fails alone.
        if (err instanceof MongoInvalidArgumentError && waiters.length > 1) {
          await Promise.all(waiters.map((w) => this.write([w])));
          return;
        }
        for (const w of waiters) w.reject(err);
        return;
      }
      for (const we of writeErrors) {
        const doc = docs[we.index];
        if (!doc) continue;
        if (we.code === DUPLICATE_KEY && doc.key !== undefined) duplicates.add(we.index);
        else failed.set(we.index, new MessageWriteError(doc._id, we.code, we.errmsg ?? '', err));
      }
    }

    const existing = await this.findExisting(docs, duplicates, failed);

    for (const [w, waiter] of waiters.entries()) {
      const ids: string[] = [];
      const inserted: StoredMessage[] = [];
      let error: { reason: unknown } | undefined;
      for (const slot of slots[w]!) {
        const doc = docs[slot.doc]!;
        if (failed.has(slot.doc)) {
          error ??= { reason: failed.get(slot.doc) };
        } else if (duplicates.has(slot.doc)) {
          ids.push(existing.get(slot.doc)!);
        } else {
          ids.push(doc._id);
          if (slot.own) inserted.push(toMessage(doc));
        }
      }
      if (error) waiter.reject(error.reason);
      else waiter.resolve({ ids, inserted });
    }
  }

  /**
   * For each document refused on the (key, to) index, the id of the message that holds the
   * pair. A duplicate that finds no holder (the duplicate was on _id, or the holder expired
   * in between) is moved to `failed`.
   */
  private async findExisting(
    docs: MessageDoc[],
    duplicates: Set<number>,
    failed: Map<number, unknown>,
  ): Promise<Map<number, string>> {
    const byDoc = new Map<number, string>();
    if (duplicates.size === 0) return byDoc;
    const pairs: { key: string; to: string }[] = [];
    for (const i of duplicates) {
      const doc = docs[i]!;
      pairs.push({ key: doc.key!, to: doc.to });
    }
    let holders: { _id: string; key?: string; to: string }[];
    try {
      holders = await this.messages
        .find({ $or: pairs }, { projection: { _id: 1, key: 1, to: 1 } })
        .toArray();
    } catch (err) {
      for (const i of duplicates) failed.set(i, err);
      duplicates.clear();
      return byDoc;
    }
    const holderByPair = new Map<string, string>();
    for (const h of holders) {
      if (typeof h.key === 'string') holderByPair.set(pairKey(h.key, h.to), h._id);
    }
    for (const i of duplicates) {
      const doc = docs[i]!;
      const holder = holderByPair.get(pairKey(doc.key!, doc.to));
      if (holder === undefined) {
        failed.set(
          i,
          new MessageWriteError(
            doc._id,
            DUPLICATE_KEY,
            'duplicate key, but no message holds its key',
          ),
        );
        duplicates.delete(i);
      } else {
        byDoc.set(i, holder);
      }
    }
    return byDoc;
  }
}
