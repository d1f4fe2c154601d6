import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
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

export interface SqliteStoreOptions {
  /** The database file, created with its folder if missing; ':memory:' for a private one. */
  path: string;
  /** How long an acked message is kept after its ack. Default 1 h. */
  ackedRetentionMs?: number;
  /** How often expired and old acked messages are deleted. Default 10 s; 0 turns it off. */
  purgeIntervalMs?: number;
  /** Rows deleted per transaction by the purge. Default 2000. */
  purgeBatch?: number;
  /** How long a write waits for another process's lock before failing. Default 5 s. */
  busyTimeoutMs?: number;
  /** A cap on the database file: past it, writes fail as on a full disk. Default none. */
  maxFileBytes?: number;
  log?: { warn(obj: object, msg: string): void };
}

const SCHEMA_VERSION = 2;
const STATUSES: readonly MessageStatus[] = ['pending', 'delivered', 'acked', 'failed'];
/** Caps the exponent of the ack retry backoff: 2^40 × base is past any sensible max. */
const MAX_BACKOFF_EXPONENT = 40;
/** After a purge, free pages beyond this share of the file go back to the file system. */
const FREE_PAGE_SHARE = 0.25;
/** At most this many pages are given back per purge run, so that it stays short. */
const VACUUM_PAGES = 2048;
/** Ids per statement of a batch update: bounds the JSON text bound to one statement. */
const CHUNK = 1000;

/**
 * Runs `each` on the items as JSON arrays of at most CHUNK items, in the caller's
 * transaction; sums what it returns. A duplicate item counts once, as it changes its row
 * once.
 */
function eachJsonChunk<T>(items: readonly T[], each: (json: string) => unknown): number {
  let sum = 0;
  for (let i = 0; i < items.length; i += CHUNK) {
    const r = each(JSON.stringify(items.length <= CHUNK ? items : items.slice(i, i + CHUNK)));
    if (typeof r === 'number') sum += r;
  }
  return sum;
}

/**
 * Times are epoch milliseconds; the payload is its JSON text, so any JSON value is stored as
 * sent and never lives on the heap longer than the call that reads or writes it.
 *
 * Every query and the index it reads (checked by test/integration/sqlite-store.test.ts):
 *   id (primary key)      get; every update by id (markDelivered, markUnrouted, retryAt,
 *                         which is also claimDue's lease, markAcked, markFailed)
 *   messages_open         listUnacked: (to_user, created_at, id) of pending and delivered
 *                         messages only, so acked and failed ones leave the index. Its
 *                         condition reads acked_at and failed_at, not status: only an ack or a
 *                         failure sets them, so markDelivered (pending -> delivered) leaves the
 *                         index alone; with status in the condition, every delivered mark
 *                         rewrote the user's index entry, on a page of its own
 *   messages_due          claimDue: (next_attempt_at, id) of messages something waits for
 *   messages_idempotency  insert's idempotency lookup: unique (idempotency_key, to_user)
 *   messages_purge        purge: purge_at (expiry, or ack + the acked retention)
 *   status_counts         countByStatus: a row per status kept by insert and by triggers,
 *                         not an index scan
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS messages (
  id              TEXT    NOT NULL PRIMARY KEY,
  to_user         TEXT    NOT NULL,
  payload         TEXT    NOT NULL,
  created_at      INTEGER NOT NULL,
  status          TEXT    NOT NULL,
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  delivered_at    INTEGER,
  acked_at        INTEGER,
  failed_at       INTEGER,
  fail_reason     TEXT,
  idempotency_key TEXT,
  expires_at      INTEGER NOT NULL,
  purge_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_open ON messages (to_user, created_at, id)
  WHERE acked_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS messages_due ON messages (next_attempt_at, id)
  WHERE next_attempt_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency ON messages (idempotency_key, to_user)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_purge ON messages (purge_at);

CREATE TABLE IF NOT EXISTS status_counts (
  status TEXT    NOT NULL PRIMARY KEY,
  n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO status_counts (status, n)
  VALUES ('pending', 0), ('delivered', 0), ('acked', 0), ('failed', 0);
-- Inserts count themselves, once per call (insertCall in the constructor): a trigger per row would cost a
-- second write per message on the hot path. Updates and deletes are counted by triggers.
CREATE TRIGGER IF NOT EXISTS messages_counted_delete AFTER DELETE ON messages BEGIN
  UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
END;
CREATE TRIGGER IF NOT EXISTS messages_counted_update AFTER UPDATE OF status ON messages
  WHEN OLD.status <> NEW.status BEGIN
  UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
  UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TABLE IF NOT EXISTS health (k TEXT NOT NULL PRIMARY KEY, at INTEGER NOT NULL);
`;

/**
 * Brings a file of an older build to the current shape, in place, keeping its messages and
 * counts. A no-op on a current file; safe to run by two processes opening one file.
 *
 * - Files written by the first builds of this store carry user_version 1 but an older shape:
 *   the idempotency key column was `key` (with its index `messages_key`), and a trigger
 *   counted every insert, which the code now counts itself. Opening such a file with the
 *   current statements failed ("no such column: idempotency_key").
 * - Version 1 indexed open messages as messages_unacked, on a condition on status;
 *   version 2 indexes them as messages_open (created by SCHEMA, from the rows).
 */
function upgradeOlderShapes(db: Database.Database): void {
  const columns = db.prepare("SELECT name FROM pragma_table_info('messages')").pluck().all();
  if (columns.includes('key')) {
    db.exec('DROP INDEX IF EXISTS messages_key');
    db.exec('ALTER TABLE messages RENAME COLUMN key TO idempotency_key');
  }
  db.exec('DROP TRIGGER IF EXISTS messages_counted_insert');
  db.exec('DROP INDEX IF EXISTS messages_unacked');
}

/** The statements, by name: also what the test checks each query plan of.
 *  A LIMIT is bound through CAST(… AS INTEGER): bound bare, SQLite (3.53 here) marks the
 *  statement to be prepared again whenever the value is bound, which is every run, and an
 *  empty replay page (listUnacked, once per connect) cost 19–27 µs instead of 3.6–3.8. */
export const SQL = {
  insert: `INSERT INTO messages (id, to_user, payload, created_at, status, attempts,
      next_attempt_at, idempotency_key, expires_at, purge_at)
    VALUES (@id, @to, @payload, @createdAt, 'pending', 0, @nextAttemptAt, @idempotencyKey, @expiresAt,
      @expiresAt)`,
  holderOfKey: `SELECT id, expires_at, payload FROM messages
    WHERE idempotency_key = ? AND to_user = ?`,
  releaseKey: `UPDATE messages SET idempotency_key = NULL WHERE id = ?`,
  get: `SELECT * FROM messages WHERE id = ? AND expires_at > ?`,
  // The updates by id take a batch in one statement: its ids as a JSON array (json_each), so
  // that a call costs one statement per chunk, not one per message.
  markDelivered: `UPDATE messages SET status = 'delivered', delivered_at = @at,
      attempts = attempts + 1,
      next_attempt_at = @at + min(@maxMs, @baseMs * (1 << min(attempts, ${MAX_BACKOFF_EXPONENT})))
    FROM (SELECT value AS id FROM json_each(@ids)) AS batch
    WHERE messages.id = batch.id AND status IN ('pending', 'delivered')`,
  markUnrouted: `UPDATE messages SET next_attempt_at = NULL
    FROM (SELECT value AS id FROM json_each(?)) AS batch
    WHERE messages.id = batch.id AND status IN ('pending', 'delivered')`,
  retryAt: `UPDATE messages SET next_attempt_at = ?
    FROM (SELECT value AS id FROM json_each(?)) AS batch
    WHERE messages.id = batch.id AND status IN ('pending', 'delivered')`,
  /** @acks: a JSON array of [id, to] pairs. */
  markAcked: `UPDATE messages SET status = 'acked', acked_at = @at, next_attempt_at = NULL,
      delivered_at = coalesce(delivered_at, @at), attempts = max(attempts, 1),
      purge_at = min(expires_at, @at + @retention)
    FROM (SELECT value ->> 0 AS id, value ->> 1 AS to_user FROM json_each(@acks)) AS batch
    WHERE messages.id = batch.id AND messages.to_user = batch.to_user AND status <> 'acked'`,
  markFailed: `UPDATE messages SET status = 'failed', failed_at = @at, fail_reason = @reason,
      next_attempt_at = NULL
    FROM (SELECT value AS id FROM json_each(@ids)) AS batch
    WHERE messages.id = batch.id AND status IN ('pending', 'delivered')`,
  due: `SELECT * FROM messages
    WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= @now
      AND status IN ('pending', 'delivered') AND expires_at > @wall
    ORDER BY next_attempt_at, id LIMIT CAST(@limit AS INTEGER)`,
  // acked_at and failed_at are null on every pending or delivered message: that condition
  // selects messages_open; the status condition keeps the answer exact regardless.
  unacked: `SELECT * FROM messages
    WHERE to_user = @to AND acked_at IS NULL AND failed_at IS NULL
      AND status IN ('pending', 'delivered') AND expires_at > @wall
      AND (created_at, id) > (@afterCreatedAt, @afterId)
    ORDER BY created_at, id LIMIT CAST(@limit AS INTEGER)`,
  counts: `SELECT status, n FROM status_counts`,
  countInserted: `UPDATE status_counts SET n = n + ? WHERE status = 'pending'`,
  purge: `DELETE FROM messages WHERE id IN
    (SELECT id FROM messages WHERE purge_at <= ? ORDER BY purge_at LIMIT CAST(? AS INTEGER))`,
  ping: `INSERT INTO health (k, at) VALUES ('ping', ?)
    ON CONFLICT (k) DO UPDATE SET at = excluded.at`,
} as const;

interface Row {
  id: string;
  to_user: string;
  payload: string;
  created_at: number;
  status: MessageStatus;
  attempts: number;
  next_attempt_at: number | null;
  delivered_at: number | null;
  acked_at: number | null;
  failed_at: number | null;
  fail_reason: string | null;
  idempotency_key: string | null;
  expires_at: number;
}

function toMessage(r: Row): StoredMessage {
  const m: StoredMessage = {
    id: r.id,
    to: r.to_user,
    payload: JSON.parse(r.payload),
    payloadJson: r.payload,
    createdAt: new Date(r.created_at),
    status: r.status,
    attempts: r.attempts,
    expiresAt: new Date(r.expires_at),
  };
  if (r.next_attempt_at !== null) m.nextAttemptAt = new Date(r.next_attempt_at);
  if (r.delivered_at !== null) m.deliveredAt = new Date(r.delivered_at);
  if (r.acked_at !== null) m.ackedAt = new Date(r.acked_at);
  if (r.failed_at !== null) m.failedAt = new Date(r.failed_at);
  if (r.fail_reason !== null) m.failReason = r.fail_reason;
  if (r.idempotency_key !== null) m.idempotencyKey = r.idempotency_key;
  return m;
}

/** A message that cannot be stored: refuses its whole insert call. */
class CallRefused extends Error {
  constructor(readonly refused: Refusal[]) {
    super('insert refused');
  }
}

/** A payload that has no JSON text, or an idempotency key held with another payload. */
class NotStorable extends Error {
  constructor(
    message: string,
    readonly keyHeldBy?: string,
  ) {
    super(message);
  }
}

/**
 * Why the message at `index` is refused, when retrying it would not help; undefined for any
 * other error (disk full, I/O error, lock timeout), which fails the whole batch instead.
 */
function refusalOf(err: unknown, index: number): Refusal | undefined {
  if (err instanceof NotStorable) return { index, reason: err.message, keyHeldBy: err.keyHeldBy };
  if (err instanceof Database.SqliteError && err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return { index, reason: 'a message with this id is already stored' };
  }
  if (err instanceof Database.SqliteError && err.code.startsWith('SQLITE_CONSTRAINT')) {
    return { index, reason: err.message };
  }
  return undefined;
}

interface Waiter {
  messages: NewMessage[];
  resolve(result: InsertResult): void;
  reject(error: unknown): void;
}

/**
 * Messages in one SQLite file (better-sqlite3): the store of a single-node deployment, of
 * development and of the tests. Several processes may open the same file; claimDue takes the
 * write lock, so two sweepers never claim one message twice.
 *
 * Durability: WAL. An insert commits with synchronous=FULL: the commit fsyncs the WAL before
 * insert resolves, so a message answered 202 survives a crash of the process and also of the
 * machine (power loss, kernel panic). synchronous=NORMAL would only fsync at checkpoints: it
 * survives a process crash, but the last commits before a power loss can be rolled back, and a
 * 202 is a promise that must not depend on the machine staying up. The fsync costs one disk
 * flush per commit, not per message: concurrent inserts share one transaction (group commit).
 *
 * Every other write (status changes, leases, purges) commits with synchronous=NORMAL: it
 * survives a process crash, and the next insert's fsync (or a checkpoint) makes it durable, as
 * the WAL is one file written in order. A power loss may undo the last of them, which delivery
 * at least once tolerates: a message whose ack or push was undone is pushed again, and clients
 * drop a repeated id. One fsync per ack request per user would otherwise hold the event loop.
 *
 * better-sqlite3 is synchronous: every call below blocks the event loop for its duration,
 * which is short (microseconds per row) except for the fsync of an insert commit.
 */
export class SqliteStore implements MessageStore {
  readonly kind = 'sqlite' as const;

  private readonly db: Database.Database;
  private readonly stmt: { [K in keyof typeof SQL]: Database.Statement };
  private readonly syncFull: Database.Statement;
  private readonly syncNormal: Database.Statement;
  private readonly ackedRetentionMs: number;
  private readonly purgeBatch: number;
  private readonly log: SqliteStoreOptions['log'];
  private readonly purgeTimer: NodeJS.Timeout | undefined;
  private purging: Promise<number> | undefined;

  private queue: Waiter[] = [];
  private flushScheduled = false;
  private closed = false;

  private readonly inTransaction: Database.Transaction<(work: () => void) => void>;
  private readonly claimTx: Database.Transaction<
    (now: number, limit: number, lease: number) => StoredMessage[]
  >;
  private readonly insertBatch: Database.Transaction<
    (waiters: Waiter[]) => (InsertResult | CallRefused)[]
  >;

  private constructor(opts: SqliteStoreOptions) {
    const memory = opts.path === ':memory:';
    if (!memory) mkdirSync(dirname(opts.path), { recursive: true });
    this.db = new Database(opts.path, { timeout: opts.busyTimeoutMs ?? 5000 });
    this.ackedRetentionMs = opts.ackedRetentionMs ?? DEFAULT_ACKED_RETENTION_MS;
    this.purgeBatch = Math.max(1, opts.purgeBatch ?? 2000);
    this.log = opts.log;
    try {
      const version = this.db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new Error(
          `${opts.path} has schema version ${version}, newer than this build's ${SCHEMA_VERSION}`,
        );
      }
      // Only takes effect on a new file: lets a purge hand free pages back to the file system.
      this.db.pragma('auto_vacuum = INCREMENTAL');
      if (!memory) this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('cache_size = -65536');
      // A statement that changes many rows in a transaction keeps a statement journal (the
      // pages it changed, to undo it alone); past 64 KiB it spilled to a temporary file, one
      // file opened, written and deleted per batch update. In memory it costs the pages of one
      // statement at most (a chunk of CHUNK ids).
      this.db.pragma('temp_store = MEMORY');
      // After a checkpoint the WAL file is cut back to this size, not left at its peak.
      this.db.pragma('journal_size_limit = 67108864');
      if (opts.maxFileBytes !== undefined) {
        const pageSize = this.db.pragma('page_size', { simple: true }) as number;
        this.db.pragma(`max_page_count = ${Math.max(1, Math.floor(opts.maxFileBytes / pageSize))}`);
      }
      // IMMEDIATE: the write lock first. A deferred transaction reads the schema and then asks
      // to write, and when another process opening the same file wrote in between, SQLite
      // answers "database is locked" at once rather than wait (6 processes opening a new file
      // together: 4 of 30 failed so).
      this.db
        .transaction(() => {
          upgradeOlderShapes(this.db);
          this.db.exec(SCHEMA);
        })
        .immediate();
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.stmt = Object.fromEntries(
      Object.entries(SQL).map(([name, sql]) => [name, this.db.prepare(sql)]),
    ) as typeof this.stmt;
    this.syncFull = this.db.prepare('PRAGMA synchronous = FULL');
    this.syncNormal = this.db.prepare('PRAGMA synchronous = NORMAL');

    // A call of several messages runs in a savepoint of its own, so that a message that cannot
    // be stored undoes its call only. A call of one message needs none: a failed INSERT changes
    // nothing (the key it may have released belonged to an expired message), and savepoints
    // cost about a third of an insert.
    const insertCall = (messages: NewMessage[], now: number): InsertResult => {
      const ids: string[] = [];
      const inserted: StoredMessage[] = [];
      const refused: Refusal[] = [];
      for (const [index, m] of messages.entries()) {
        try {
          const id = this.insertOne(m, now);
          ids.push(id);
          if (id === m.id) inserted.push(this.storedOf(m));
        } catch (err) {
          const refusal = refusalOf(err, index);
          if (refusal === undefined) throw err;
          refused.push(refusal);
        }
      }
      if (refused.length > 0) throw new CallRefused(refused);
      if (inserted.length > 0) this.stmt.countInserted.run(inserted.length);
      return { ids, inserted, refused };
    };
    const insertCallAlone = this.db.transaction(insertCall);
    this.inTransaction = this.db.transaction((work: () => void) => work());
    this.claimTx = this.db.transaction((now: number, limit: number, lease: number) => {
      const rows = this.stmt.due.all({ now, wall: Date.now(), limit }) as Row[];
      // The lease: one statement per chunk of the claimed ids (retryAt's), not one per
      // message, which cost half of a claim.
      eachJsonChunk(
        rows.map((r) => r.id),
        (ids) => this.stmt.retryAt.run(lease, ids),
      );
      for (const r of rows) r.next_attempt_at = lease;
      return rows.map(toMessage);
    });
    this.insertBatch = this.db.transaction((waiters: Waiter[]) => {
      const now = Date.now();
      return waiters.map((w) => {
        try {
          return w.messages.length === 1
            ? insertCall(w.messages, now)
            : insertCallAlone(w.messages, now);
        } catch (err) {
          if (err instanceof CallRefused) return err;
          throw err;
        }
      });
    });

    const interval = opts.purgeIntervalMs ?? 10_000;
    if (interval > 0) {
      this.purgeTimer = setInterval(() => void this.purgeInBackground(), interval);
      // Housekeeping must not keep a process alive that has nothing else to do.
      this.purgeTimer.unref();
    }
  }

  static open(opts: SqliteStoreOptions): SqliteStore {
    return new SqliteStore(opts);
  }

  /** Resolves once the messages are committed and the commit is on disk. Concurrent calls
   *  share one transaction; each call is all or nothing. */
  insert(messages: NewMessage[]): Promise<InsertResult> {
    if (messages.length === 0) return Promise.resolve({ ids: [], inserted: [], refused: [] });
    if (this.closed) return Promise.reject(new Error('SqliteStore is closed'));
    return new Promise<InsertResult>((resolve, reject) => {
      this.queue.push({ messages, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Every insert of this event-loop turn joins the same commit.
        setImmediate(() => this.flush());
      }
    });
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const row = this.stmt.get.get(id, Date.now()) as Row | undefined;
    return row ? toMessage(row) : undefined;
  }

  async markDelivered(ids: string[], at: Date, retry: AckRetry): Promise<void> {
    const t = at.getTime();
    this.eachChunk(ids, (chunk) =>
      this.stmt.markDelivered.run({ ids: chunk, at: t, baseMs: retry.baseMs, maxMs: retry.maxMs }),
    );
  }

  async markUnrouted(ids: string[]): Promise<void> {
    this.eachChunk(ids, (chunk) => this.stmt.markUnrouted.run(chunk));
  }

  async retryAt(ids: string[], at: Date): Promise<void> {
    const t = at.getTime();
    this.eachChunk(ids, (chunk) => this.stmt.retryAt.run(t, chunk));
  }

  async markAcked(acks: readonly UserAcks[], at: Date): Promise<number> {
    const t = at.getTime();
    const retention = this.ackedRetentionMs;
    // One transaction (one commit) for every user's acks: a commit per user made commits
    // most of collect's time under load.
    const items = acks.flatMap(({ userId, ids }) => ids.map((id) => [id, userId]));
    return this.eachChunk(
      items,
      (chunk) => this.stmt.markAcked.run({ acks: chunk, at: t, retention }).changes,
    );
  }

  async markFailed(ids: string[], at: Date, reason: string): Promise<void> {
    const t = at.getTime();
    this.eachChunk(ids, (chunk) => this.stmt.markFailed.run({ ids: chunk, at: t, reason }));
  }

  async claimDue(now: Date, limit: number, leaseMs: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    // IMMEDIATE takes the write lock before reading: another process's claim waits for this
    // one to commit, then no longer sees these messages as due.
    return this.claimTx.immediate(now.getTime(), limit, now.getTime() + leaseMs);
  }

  async listUnacked(
    userId: string,
    limit: number,
    after?: UnackedCursor,
  ): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const rows = this.stmt.unacked.all({
      to: userId,
      wall: Date.now(),
      afterCreatedAt: after?.createdAt.getTime() ?? -1,
      afterId: after?.id ?? '',
      limit,
    }) as Row[];
    return rows.map(toMessage);
  }

  /** Messages held, by status; an expired one counts until the purge deletes it. */
  async countByStatus(): Promise<Record<MessageStatus, number>> {
    const counts: Record<MessageStatus, number> = { pending: 0, delivered: 0, acked: 0, failed: 0 };
    for (const r of this.stmt.counts.all() as { status: MessageStatus; n: number }[]) {
      if (STATUSES.includes(r.status)) counts[r.status] = r.n;
    }
    return counts;
  }

  /** Deletes up to `limit` messages that expired or were acked longer than the acked
   *  retention ago, in one transaction; returns how many. */
  async purge(now: Date, limit: number = this.purgeBatch): Promise<number> {
    if (limit <= 0) return 0;
    return this.stmt.purge.run(now.getTime(), limit).changes;
  }

  /** A small durable write: fails when the file cannot take writes (disk full, read-only,
   *  locked by another process past the busy timeout, closed). */
  async ping(): Promise<void> {
    this.stmt.ping.run(Date.now());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.flush();
    await this.purging?.catch(() => 0);
    this.db.close();
  }

  /** File size facts, for the bench and for operators. */
  fileStats(): { pages: number; freePages: number; pageSize: number } {
    return {
      pages: this.db.pragma('page_count', { simple: true }) as number,
      freePages: this.db.pragma('freelist_count', { simple: true }) as number,
      pageSize: this.db.pragma('page_size', { simple: true }) as number,
    };
  }

  /**
   * Deletes what the retention allows in batches, yielding to the event loop between them so
   * that no single transaction holds ingestion up; then gives free pages back to the file
   * system when they are more than a quarter of the file. Runs one at a time.
   */
  purgeInBackground(now: () => Date = () => new Date()): Promise<number> {
    this.purging ??= (async () => {
      let total = 0;
      try {
        for (;;) {
          if (this.closed) break;
          const n = await this.purge(now());
          total += n;
          if (n < this.purgeBatch) break;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        if (!this.closed) this.giveBackFreePages();
      } catch (err) {
        this.log?.warn({ err }, 'message store purge failed; retrying at the next interval');
      } finally {
        this.purging = undefined;
      }
      return total;
    })();
    return this.purging;
  }

  private giveBackFreePages(): void {
    const { pages, freePages } = this.fileStats();
    if (freePages > 0 && freePages > pages * FREE_PAGE_SHARE) {
      this.db.pragma(`incremental_vacuum(${VACUUM_PAGES})`);
    }
  }

  /** Commits every queued insert call in one transaction and settles each. */
  private flush(): void {
    this.flushScheduled = false;
    const waiters = this.queue;
    if (waiters.length === 0) return;
    this.queue = [];
    let results: (InsertResult | CallRefused)[];
    try {
      // Only the commit of inserts waits for the disk (see the class comment).
      this.syncFull.run();
      try {
        // IMMEDIATE, as every write here: the write lock is taken (or waited for) at BEGIN, so
        // another process's commit can never make a read-then-write transaction fail midway.
        results = this.insertBatch.immediate(waiters);
      } finally {
        this.syncNormal.run();
      }
    } catch (err) {
      // The commit failed (I/O error, disk full, lock timeout): nothing of the batch is stored.
      for (const w of waiters) w.reject(err);
      return;
    }
    for (const [i, w] of waiters.entries()) {
      const r = results[i]!;
      w.resolve(r instanceof CallRefused ? { ids: [], inserted: [], refused: r.refused } : r);
    }
  }

  /** Stores one message, or returns the id of the live message holding its (idempotency key,
   *  to) with the same payload; refuses it when that message's payload differs. */
  private insertOne(m: NewMessage, now: number): string {
    let payload: string | undefined = m.payloadJson;
    try {
      payload ??= JSON.stringify(m.payload) as string | undefined;
    } catch (err) {
      throw new NotStorable(`the payload cannot be serialized: ${(err as Error).message}`);
    }
    if (payload === undefined) throw new NotStorable('the payload is not a JSON value');
    if (m.idempotencyKey !== undefined) {
      const holder = this.stmt.holderOfKey.get(m.idempotencyKey, m.to) as
        { id: string; expires_at: number; payload: string } | undefined;
      if (holder) {
        if (holder.expires_at > now) {
          if (holder.payload === payload) return holder.id;
          throw new NotStorable(keyConflict(holder.id), holder.id);
        }
        // Expired but not purged yet: it no longer holds the key.
        this.stmt.releaseKey.run(holder.id);
      }
    }
    this.stmt.insert.run({
      id: m.id,
      to: m.to,
      payload,
      createdAt: m.createdAt.getTime(),
      nextAttemptAt: m.nextAttemptAt?.getTime() ?? null,
      idempotencyKey: m.idempotencyKey ?? null,
      expiresAt: m.expiresAt.getTime(),
    });
    return m.id;
  }

  private storedOf(m: NewMessage): StoredMessage {
    const s: StoredMessage = {
      id: m.id,
      to: m.to,
      payload: m.payload,
      createdAt: new Date(m.createdAt),
      status: 'pending',
      attempts: 0,
      expiresAt: new Date(m.expiresAt),
    };
    if (m.nextAttemptAt !== undefined) s.nextAttemptAt = new Date(m.nextAttemptAt);
    if (m.idempotencyKey !== undefined) s.idempotencyKey = m.idempotencyKey;
    if (m.payloadJson !== undefined) s.payloadJson = m.payloadJson;
    return s;
  }

  /** eachJsonChunk in one transaction of its own (one commit). */
  private eachChunk<T>(items: readonly T[], each: (json: string) => unknown): number {
    if (items.length === 0) return 0;
    if (this.closed) throw new Error('SqliteStore is closed');
    let sum = 0;
    this.inTransaction.immediate(() => (sum = eachJsonChunk(items, each)));
    return sum;
  }
}
