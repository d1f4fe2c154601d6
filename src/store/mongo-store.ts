import {
  MongoBulkWriteError,
  MongoClient,
  type Collection,
  type Db,
  type MongoClientOptions,
  type WithId,
  type WriteError,
} from 'mongodb';
import type { MessageStatus } from '../protocol/public-api.js';
import {
  DEFAULT_ACKED_RETENTION_MS,
  type AckRetry,
  type InsertResult,
  type MessageStore,
  type NewMessage,
  type Refusal,
  type StoredMessage,
  type UnackedCursor,
  type UserAcks,
  keyConflict,
} from './message-store.js';

interface MessageDoc {
  _id: string;
  to: string;
  /** The payload's JSON text: any JSON value is storable, whatever BSON thinks of its keys
   *  (NUL, '$', '.') or its depth. */
  payloadJson?: string;
  /** Documents written before payloadJson existed hold the payload as BSON. */
  payload?: unknown;
  createdAt: Date;
  status: MessageStatus;
  /** Absent from documents written before redelivery existed: read as 0. */
  attempts?: number;
  nextAttemptAt?: Date;
  deliveredAt?: Date;
  ackedAt?: Date;
  failedAt?: Date;
  failReason?: string;
  /** The idempotency key. Named `key` in documents, as databases written by 0.1.0 have it. */
  key?: string;
  expiresAt: Date;
  /** Set on ack: when the acked retention runs out. The TTL monitor deletes it then. */
  purgeAt?: Date;
}

export interface MongoStoreOptions {
  /** Longest an insert waits for others to share its write. Default 2 ms. */
  flushDelayMs?: number;
  /** A batch holding this many messages is written at once. Default 1000. */
  maxBatch?: number;
  /** How long an acked message is kept after its ack. Default 1 h. */
  ackedRetentionMs?: number;
  /** wtimeoutMS of every write: how long a majority may take to acknowledge. Default 5 s. */
  writeTimeoutMs?: number;
  /** maxTimeMS of every read and update on the server. Default 5 s. */
  operationTimeoutMs?: number;
  /** ping's write must be acknowledged by a majority within this. Default 700 ms (the
   *  /health probe gives up after 800 ms). */
  pingTimeoutMs?: number;
  /** countByStatus recounts at most this often, in the background. Default 30 s; 0 recounts
   *  on every call (tests). */
  countRefreshMs?: number;
  /** The document ping writes: one per instance. Default a random one. */
  healthId?: string;
  log?: { warn(obj: object, msg: string): void };
}

interface Waiter {
  messages: NewMessage[];
  resolve(result: InsertResult): void;
  reject(error: unknown): void;
}

const COLLECTION = 'messages';
const HEALTH = 'health';
const DUPLICATE_KEY = 11000;
/** Write errors that a retry of the same document would meet again: BadValue,
 *  DocumentValidationFailure, BSONObjectTooLarge, DuplicateKey. */
const PERMANENT_WRITE_ERRORS = new Set([2, 121, 10334, DUPLICATE_KEY]);
const OPEN: MessageStatus[] = ['pending', 'delivered'];
const STATUSES: readonly MessageStatus[] = ['pending', 'delivered', 'acked', 'failed'];
/** Caps the exponent of the ack retry backoff: 2^40 × base is past any sensible max. */
const MAX_BACKOFF_EXPONENT = 40;
/** Under MongoDB's 16 MiB document limit, with room for the other fields. */
const MAX_PAYLOAD_JSON = 15 * 1024 * 1024;

/**
 * Indexes keep their default names (key_1_to_1 …): a database created by an earlier version,
 * with the same keys, then needs no migration.
 *
 * Every query and the index it reads (also in docs/storage.md):
 *   _id                                    get; every update by id
 *   unacked {to, status, createdAt, _id}   listUnacked (two status ranges, merged in order)
 *   claimDue {nextAttemptAt, _id}          claimDue, in index order: each page starts where
 *     partial: nextAttemptAt exists        the last one's leases left the range
 *   key {key, to} unique, partial          insert's idempotency lookup
 *   expiresAt TTL                          the TTL monitor: expiry
 *   purgeAt TTL, partial                   the TTL monitor: acked retention; purge()
 *   counts {status, expiresAt}             countByStatus, counted on the index alone
 */
const INDEXES = [
  { key: { to: 1, status: 1, createdAt: 1, _id: 1 } },
  {
    key: { nextAttemptAt: 1, _id: 1 },
    partialFilterExpression: { nextAttemptAt: { $exists: true } },
  },
  {
    key: { key: 1, to: 1 },
    unique: true,
    partialFilterExpression: { key: { $type: 'string' } },
  },
  // The TTL monitor deletes about once a minute, so reads still filter on expiresAt.
  { key: { expiresAt: 1 }, expireAfterSeconds: 0 },
  {
    key: { purgeAt: 1 },
    expireAfterSeconds: 0,
    partialFilterExpression: { purgeAt: { $exists: true } },
  },
  { key: { status: 1, expiresAt: 1 } },
] as const;

function toDoc(m: NewMessage, payloadJson: string): MessageDoc {
  const doc: MessageDoc = {
    _id: m.id,
    to: m.to,
    payloadJson,
    createdAt: m.createdAt,
    status: 'pending',
    attempts: 0,
    expiresAt: m.expiresAt,
  };
  if (m.nextAttemptAt !== undefined) doc.nextAttemptAt = m.nextAttemptAt;
  // Only a string key may enter the unique index: a stored null would collide with every other.
  if (m.idempotencyKey !== undefined) doc.key = m.idempotencyKey;
  return doc;
}

function payloadOf(doc: MessageDoc): unknown {
  return doc.payloadJson !== undefined ? JSON.parse(doc.payloadJson) : doc.payload;
}

/** `payload` spares parsing the JSON text again when the caller still has the value. */
function toMessage(doc: WithId<MessageDoc>, payload: unknown = payloadOf(doc)): StoredMessage {
  const m: StoredMessage = {
    id: doc._id,
    to: doc.to,
    payload,
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
  if (typeof doc.key === 'string') m.idempotencyKey = doc.key;
  return m;
}

/** The payload's JSON text, or why it cannot be stored. */
function serialize(payload: unknown): { json: string } | { reason: string } {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload) as string | undefined;
  } catch (err) {
    return { reason: `the payload cannot be serialized: ${(err as Error).message}` };
  }
  if (json === undefined) return { reason: 'the payload is not a JSON value' };
  if (json.length > MAX_PAYLOAD_JSON) {
    return { reason: `the payload is over ${MAX_PAYLOAD_JSON} characters of JSON` };
  }
  return { json };
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

/** A document of one batch write, and what became of it. */
interface Slot {
  doc: MessageDoc;
  payload: unknown;
  /** The waiters whose messages this document stands for (several share a (key, to) with the
   *  same payload). */
  owners: Set<number>;
  outcome?: { id: string } | { refused: string; keyHeldBy?: string };
}

/**
 * Messages in MongoDB. Concurrent inserts share one insertMany (group commit): with
 * w:majority + j:true each write waits for replication and a journal flush, so writing one
 * request at a time would cap ingestion at a few hundred requests a second. Every write waits
 * for a majority at most `writeTimeoutMs`, every read or update runs at most
 * `operationTimeoutMs` on the server.
 */
export class MongoStore implements MessageStore {
  readonly kind = 'mongodb' as const;

  private readonly client: MongoClient;
  private readonly db: Db;
  private readonly messages: Collection<MessageDoc>;
  private readonly health: Collection<{ _id: string; at: Date }>;
  private readonly flushDelayMs: number;
  private readonly maxBatch: number;
  private readonly ackedRetentionMs: number;
  private readonly maxTimeMS: number;
  private readonly pingTimeoutMs: number;
  private readonly countRefreshMs: number;
  private readonly healthId: string;
  private readonly log: MongoStoreOptions['log'];

  private batch: Waiter[] = [];
  private batchCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly writing = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;
  private counts: { at: number; value: Record<MessageStatus, number> } | undefined;
  private counting: Promise<Record<MessageStatus, number>> | undefined;

  constructor(client: MongoClient, dbName: string, opts: MongoStoreOptions = {}) {
    this.client = client;
    this.db = client.db(dbName);
    this.messages = this.db.collection<MessageDoc>(COLLECTION, {
      writeConcern: { w: 'majority', j: true, wtimeoutMS: opts.writeTimeoutMs ?? 5000 },
      readConcern: { level: 'majority' },
    });
    this.health = this.db.collection(HEALTH);
    this.flushDelayMs = opts.flushDelayMs ?? 2;
    this.maxBatch = Math.max(1, opts.maxBatch ?? 1000);
    this.ackedRetentionMs = opts.ackedRetentionMs ?? DEFAULT_ACKED_RETENTION_MS;
    this.maxTimeMS = opts.operationTimeoutMs ?? 5000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 700;
    this.countRefreshMs = opts.countRefreshMs ?? 30_000;
    this.healthId = opts.healthId ?? `ping-${Math.random().toString(36).slice(2)}`;
    this.log = opts.log;
  }

  static async connect(
    url: string,
    dbName: string,
    opts: MongoStoreOptions & { clientOptions?: MongoClientOptions } = {},
  ): Promise<MongoStore> {
    // Fail fast when no primary is reachable: the default waits 30 s per operation.
    const client = new MongoClient(url, {
      serverSelectionTimeoutMS: 5000,
      connectTimeoutMS: 5000,
      ...opts.clientOptions,
    });
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
    await this.messages.createIndexes(INDEXES.map((i) => ({ ...i })));
  }

  insert(messages: NewMessage[]): Promise<InsertResult> {
    if (messages.length === 0) return Promise.resolve({ ids: [], inserted: [], refused: [] });
    if (this.closing) return Promise.reject(new Error('MongoStore is closed'));
    return new Promise<InsertResult>((resolve, reject) => {
      this.batch.push({ messages, resolve, reject });
      this.batchCount += messages.length;
      if (this.batchCount >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.flushDelayMs);
    });
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const doc = await this.messages.findOne(
      { _id: id, expiresAt: { $gt: new Date() } },
      { maxTimeMS: this.maxTimeMS },
    );
    return doc ? toMessage(doc) : undefined;
  }

  async markDelivered(ids: string[], at: Date, retry: AckRetry): Promise<void> {
    if (ids.length === 0) return;
    // One pipeline update: the delay depends on each document's own attempt count. Expressions
    // in one $set stage read the fields as they were, so '$attempts' is the count before this
    // push: the exponent attempts − 1 of the new count.
    const before = { $ifNull: ['$attempts', 0] };
    await this.messages.updateMany(
      { _id: { $in: ids }, status: { $in: OPEN } },
      [
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
      ],
      { maxTimeMS: this.maxTimeMS },
    );
  }

  async markUnrouted(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.messages.updateMany(
      { _id: { $in: ids }, status: { $in: OPEN } },
      { $unset: { nextAttemptAt: '' } },
      { maxTimeMS: this.maxTimeMS },
    );
  }

  async retryAt(ids: string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    await this.messages.updateMany(
      { _id: { $in: ids }, status: { $in: OPEN } },
      { $set: { nextAttemptAt: at } },
      { maxTimeMS: this.maxTimeMS },
    );
  }

  async markAcked(acks: readonly UserAcks[], at: Date): Promise<number> {
    const byUser = acks.filter((a) => a.ids.length > 0);
    if (byUser.length === 0) return 0;
    const retained = new Date(at.getTime() + this.ackedRetentionMs);
    const update = [
      {
        $set: {
          status: 'acked',
          ackedAt: at,
          // An acked message was delivered, though its mark may not have been written.
          deliveredAt: { $ifNull: ['$deliveredAt', at] },
          attempts: { $max: [{ $ifNull: ['$attempts', 0] }, 1] },
          // The TTL index on purgeAt deletes it once the acked retention ran out.
          purgeAt: { $min: ['$expiresAt', retained] },
        },
      },
      { $unset: 'nextAttemptAt' },
    ];
    // Every user's acks in one round trip.
    const res = await this.messages.bulkWrite(
      byUser.map(({ userId, ids }) => ({
        updateMany: {
          filter: { _id: { $in: [...ids] }, to: userId, status: { $ne: 'acked' as const } },
          update,
        },
      })),
      { ordered: false, maxTimeMS: this.maxTimeMS },
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
      { maxTimeMS: this.maxTimeMS },
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
      // Index order is the sort order: a page reads `limit` documents (plus any that are
      // acked, failed or expired in between), never the whole backlog.
      .hint({ nextAttemptAt: 1, _id: 1 })
      .sort({ nextAttemptAt: 1, _id: 1 })
      .limit(limit)
      .maxTimeMS(this.maxTimeMS)
      .toArray();
    if (docs.length === 0) return [];
    const ids = docs.map((d) => d._id);
    const lease = new Date(now.getTime() + leaseMs);
    const res = await this.messages.updateMany(
      { _id: { $in: ids }, nextAttemptAt: { $lte: now } },
      { $set: { nextAttemptAt: lease } },
      { maxTimeMS: this.maxTimeMS },
    );
    let claimed = docs;
    if (res.modifiedCount < docs.length) {
      // Some changed between the find and the update: acked, failed, or claimed by another
      // sweeper (whose lease is past `now`). Return only those that carry this lease.
      const mine = await this.messages
        .find({ _id: { $in: ids }, nextAttemptAt: lease }, { projection: { _id: 1 } })
        .maxTimeMS(this.maxTimeMS)
        .toArray();
      const kept = new Set(mine.map((d) => d._id));
      claimed = docs.filter((d) => kept.has(d._id));
    }
    return claimed.map((d) => ({ ...toMessage(d), nextAttemptAt: lease }));
  }

  async listUnacked(
    userId: string,
    limit: number,
    after?: UnackedCursor,
  ): Promise<StoredMessage[]> {
    // limit(0) would mean "no limit" to MongoDB.
    if (limit <= 0) return [];
    const page = after
      ? {
          $or: [
            { createdAt: { $gt: after.createdAt } },
            { createdAt: after.createdAt, _id: { $gt: after.id } },
          ],
        }
      : {};
    const docs = await this.messages
      .find({ to: userId, status: { $in: OPEN }, expiresAt: { $gt: new Date() }, ...page })
      .sort({ createdAt: 1, _id: 1 })
      .limit(limit)
      .maxTimeMS(this.maxTimeMS)
      .toArray();
    return docs.map((d) => toMessage(d));
  }

  /**
   * Counts of unexpired messages per status, counted on the {status, expiresAt} index (no
   * document is read) at most every `countRefreshMs`: a call in between gets the last counts
   * and starts a recount in the background. Only the very first call waits for a count.
   */
  async countByStatus(): Promise<Record<MessageStatus, number>> {
    const last = this.counts;
    if (last && Date.now() - last.at < this.countRefreshMs) return { ...last.value };
    const recount = this.recount();
    if (!last || this.countRefreshMs === 0) return { ...(await recount) };
    recount.catch((err: unknown) =>
      this.log?.warn({ err }, 'message counts could not be refreshed; serving the last ones'),
    );
    return { ...last.value };
  }

  async purge(now: Date, limit = 1000): Promise<number> {
    if (limit <= 0) return 0;
    const due = await this.messages
      .find(
        { $or: [{ expiresAt: { $lte: now } }, { purgeAt: { $lte: now } }] },
        { projection: { _id: 1 } },
      )
      .limit(limit)
      .maxTimeMS(this.maxTimeMS)
      .toArray();
    if (due.length === 0) return 0;
    const res = await this.messages.deleteMany(
      { _id: { $in: due.map((d) => d._id) } },
      { maxTimeMS: this.maxTimeMS },
    );
    return res.deletedCount;
  }

  /**
   * A one-document write acknowledged by a majority and journaled: fails whenever inserts
   * would (no primary, no majority, writes not acknowledged in time), not only when the
   * server is unreachable.
   */
  async ping(): Promise<void> {
    await this.health.updateOne(
      { _id: this.healthId },
      { $set: { at: new Date() } },
      {
        upsert: true,
        writeConcern: { w: 'majority', j: true, wtimeoutMS: this.pingTimeoutMs },
        maxTimeMS: this.pingTimeoutMs,
      },
    );
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private recount(): Promise<Record<MessageStatus, number>> {
    this.counting ??= (async () => {
      try {
        const now = new Date();
        const ns = await Promise.all(
          STATUSES.map((status) =>
            this.messages.countDocuments(
              { status, expiresAt: { $gt: now } },
              { hint: { status: 1, expiresAt: 1 }, maxTimeMS: this.maxTimeMS },
            ),
          ),
        );
        const value = Object.fromEntries(STATUSES.map((s, i) => [s, ns[i]!])) as Record<
          MessageStatus,
          number
        >;
        this.counts = { at: Date.now(), value };
        return value;
      } finally {
        this.counting = undefined;
      }
    })();
    return this.counting;
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

  /**
   * Writes one batch and settles each of its waiters. A waiter with a message that cannot be
   * stored is refused as a whole: its payloads are checked before the write, and documents of
   * its that the server took anyway are deleted again. A failure whose outcome is unknown
   * rejects every waiter it touches.
   */
  private async write(waiters: Waiter[]): Promise<void> {
    const refused = new Map<number, Refusal[]>();
    // One document per keyless message and per distinct (key, to, payload): a second message
    // with the same pair and payload in the batch would only fail on the unique index, so it
    // shares the first's doc. One with the same pair and another payload gets a document of
    // its own: the unique index lets one of them in, and the other is refused as a conflict.
    const slots: Slot[] = [];
    const slotOf: number[][] = waiters.map(() => []);
    const slotByPair = new Map<string, number>();
    for (const [w, waiter] of waiters.entries()) {
      const docs: { doc: MessageDoc; payload: unknown }[] = [];
      const bad: Refusal[] = [];
      for (const [index, m] of waiter.messages.entries()) {
        const s = serialize(m.payload);
        if ('reason' in s) bad.push({ index, reason: s.reason });
        else docs.push({ doc: toDoc(m, s.json), payload: m.payload });
      }
      if (bad.length > 0) {
        refused.set(w, bad);
        continue;
      }
      for (const d of docs) {
        const pair =
          d.doc.key === undefined
            ? undefined
            : `${d.doc.key}\u0000${d.doc.to}\u0000${d.doc.payloadJson}`;
        const earlier = pair === undefined ? undefined : slotByPair.get(pair);
        if (earlier !== undefined) {
          slots[earlier]!.owners.add(w);
          slotOf[w]!.push(earlier);
          continue;
        }
        if (pair !== undefined) slotByPair.set(pair, slots.length);
        slotOf[w]!.push(slots.length);
        slots.push({ ...d, owners: new Set([w]) });
      }
    }

    let unknown: unknown;
    try {
      await this.insertSlots(slots);
    } catch (err) {
      unknown = err;
    }
    if (unknown !== undefined) {
      for (const [w, waiter] of waiters.entries()) {
        const bad = refused.get(w);
        if (bad) waiter.resolve({ ids: [], inserted: [], refused: bad });
        else waiter.reject(unknown);
      }
      return;
    }

    for (const [w] of waiters.entries()) {
      if (refused.has(w)) continue;
      const bad: Refusal[] = [];
      for (const [index, s] of slotOf[w]!.entries()) {
        const outcome = slots[s]!.outcome;
        if (outcome && 'refused' in outcome)
          bad.push({ index, reason: outcome.refused, keyHeldBy: outcome.keyHeldBy });
      }
      if (bad.length > 0) refused.set(w, bad);
    }
    // The documents the server took for refused waiters, unless an accepted waiter shares
    // them: all or nothing per call.
    const undo = slots.filter(
      (s) =>
        s.outcome &&
        'id' in s.outcome &&
        s.outcome.id === s.doc._id &&
        [...s.owners].every((w) => refused.has(w)),
    );
    let undoError: unknown;
    if (undo.length > 0) {
      try {
        await this.messages.deleteMany({ _id: { $in: undo.map((s) => s.doc._id) } });
      } catch (err) {
        undoError = err;
        this.log?.warn(
          { err, ids: undo.map((s) => s.doc._id) },
          'could not delete the stored messages of a refused insert',
        );
      }
    }

    for (const [w, waiter] of waiters.entries()) {
      const bad = refused.get(w);
      if (bad) {
        // Its other messages may still be stored: the outcome is unknown, not a refusal.
        if (undoError !== undefined && slotOf[w]!.some((s) => undo.includes(slots[s]!))) {
          waiter.reject(undoError);
        } else {
          waiter.resolve({ ids: [], inserted: [], refused: bad });
        }
        continue;
      }
      const ids: string[] = [];
      const inserted: StoredMessage[] = [];
      const seen = new Set<number>();
      for (const s of slotOf[w]!) {
        const slot = slots[s]!;
        const id = (slot.outcome as { id: string }).id;
        ids.push(id);
        // A document shared by several waiters is new for the first accepted one only.
        const first = Math.min(...[...slot.owners].filter((o) => !refused.has(o)));
        if (id === slot.doc._id && first === w && !seen.has(s)) {
          seen.add(s);
          inserted.push(toMessage(slot.doc, slot.payload));
        }
      }
      waiter.resolve({ ids, inserted, refused: [] });
    }
  }

  /**
   * Inserts the slots' documents (unordered) and sets each slot's outcome: its own id, the id
   * of the live message holding its (key, to), or a refusal. A holder that has expired no
   * longer holds the key: its key is released and the document inserted again, once. Throws
   * when the outcome of any document is unknown.
   */
  private async insertSlots(all: Slot[]): Promise<void> {
    let round = all;
    for (let attempt = 0; round.length > 0; attempt++) {
      const duplicates: Slot[] = [];
      try {
        await this.messages.insertMany(
          round.map((s) => s.doc),
          { ordered: false },
        );
      } catch (err) {
        const writeErrors = perDocumentErrors(err);
        if (!writeErrors) throw err;
        // A document failed for a passing reason (a step-down, a time limit): retrying the
        // batch may work, so the outcome is unknown rather than a refusal.
        if (writeErrors.some((we) => !PERMANENT_WRITE_ERRORS.has(we.code))) throw err;
        for (const we of writeErrors) {
          const slot = round[we.index];
          if (!slot) continue;
          const onKey = we.code === DUPLICATE_KEY && slot.doc.key !== undefined;
          if (onKey && !/\b_id_\b/.test(we.errmsg ?? '')) duplicates.push(slot);
          else if (we.code === DUPLICATE_KEY) {
            slot.outcome = { refused: 'a message with this id is already stored' };
          } else {
            slot.outcome = { refused: `refused by the database (${we.code}): ${we.errmsg}` };
          }
        }
      }
      for (const s of round) s.outcome ??= { id: s.doc._id };
      for (const s of duplicates) delete s.outcome;
      if (duplicates.length === 0) return;

      const holders = await this.messages
        .find(
          // $type restates the partial index's filter, so the planner surely can use it.
          {
            $or: duplicates.map((s) => ({
              key: { $eq: s.doc.key, $type: 'string' },
              to: s.doc.to,
            })),
          },
          { projection: { _id: 1, key: 1, to: 1, expiresAt: 1, payloadJson: 1, payload: 1 } },
        )
        .maxTimeMS(this.maxTimeMS)
        .toArray();
      const now = Date.now();
      const holderByPair = new Map<string, WithId<MessageDoc>>();
      for (const h of holders) holderByPair.set(`${h.key}\u0000${h.to}`, h);
      const again: Slot[] = [];
      const expired: string[] = [];
      for (const s of duplicates) {
        const holder = holderByPair.get(`${s.doc.key}\u0000${s.doc.to}`);
        if (holder && holder.expiresAt.getTime() > now) {
          // Documents written before payloadJson existed hold the payload as BSON.
          const held = holder.payloadJson ?? JSON.stringify(holder.payload);
          s.outcome =
            held === s.doc.payloadJson
              ? { id: holder._id }
              : { refused: keyConflict(holder._id), keyHeldBy: holder._id };
        } else if (attempt === 0) {
          if (holder) expired.push(holder._id);
          again.push(s);
        } else {
          // Taken again between two rounds by a message that is gone again: let the caller
          // retry rather than loop.
          throw new Error(`the key of message ${s.doc._id} is contended: retry`);
        }
      }
      if (expired.length > 0) {
        await this.messages.updateMany(
          { _id: { $in: expired }, expiresAt: { $lte: new Date(now) } },
          { $unset: { key: '' } },
          { maxTimeMS: this.maxTimeMS },
        );
      }
      round = again;
    }
  }
}
