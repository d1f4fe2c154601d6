import type { MessageStatus } from '../protocol/public-api.js';
import { Journal, readJournal, type JournalOptions, type JournalStats } from './journal.js';
import type {
  AckRetry,
  InsertResult,
  MessageStore,
  NewMessage,
  StoredMessage,
} from './message-store.js';

export interface MemoryStoreOptions {
  /** How often expired messages are dropped. Default 60 s. */
  sweepIntervalMs?: number;
  /**
   * A file that records every change, so that the store survives a restart (SIGKILL included):
   * only with `MemoryStore.open`. Without it, messages are lost on restart.
   */
  journalPath?: string;
  /** Rewrite the journal once it grew by this much and by more than its live content.
   *  Default 64 MiB. */
  journalCompactBytes?: number;
  log?: JournalOptions['log'];
}

const STATUSES: readonly MessageStatus[] = ['pending', 'delivered', 'acked', 'failed'];

/** (createdAt, id) order: createdAt alone ties whenever two messages share a millisecond. */
function before(a: StoredMessage, b: StoredMessage): boolean {
  const ta = a.createdAt.getTime();
  const tb = b.createdAt.getTime();
  return ta < tb || (ta === tb && a.id < b.id);
}

/** (nextAttemptAt, id) order, for messages that have a nextAttemptAt. */
function dueBefore(a: StoredMessage, b: StoredMessage): boolean {
  const ta = a.nextAttemptAt!.getTime();
  const tb = b.nextAttemptAt!.getTime();
  return ta < tb || (ta === tb && a.id < b.id);
}

function isExpired(m: StoredMessage, now: number): boolean {
  return m.expiresAt.getTime() <= now;
}

function isOpen(m: StoredMessage): boolean {
  return m.status === 'pending' || m.status === 'delivered';
}

function idempotencyKey(key: string, to: string): string {
  return key + '\u0000' + to;
}

/**
 * The wait before the next look at a message pushed `attempts` times. The exponent is capped:
 * 2^40 × base is past any sensible max, and an uncapped 2^n overflows to Infinity (× 0 = NaN).
 */
export function ackRetryDelay(retry: AckRetry, attempts: number): number {
  return Math.min(retry.maxMs, retry.baseMs * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
}

// ---- journal records --------------------------------------------------------------------------
// One JSON line per change, dates as epoch milliseconds. 'm' holds a whole message (an insert, or
// a message in a snapshot); 's' holds the fields that change after insert. Each record holds the
// message's state after the change, so replaying a file in order ends in the latest state.

const JOURNAL_VERSION = 1;

interface StateFields {
  id: string;
  status: MessageStatus;
  attempts: number;
  nextAttemptAt?: number;
  deliveredAt?: number;
  ackedAt?: number;
  failedAt?: number;
  failReason?: string;
}

interface MessageRecord extends StateFields {
  t: 'm';
  to: string;
  payload: unknown;
  createdAt: number;
  expiresAt: number;
  key?: string;
}

interface StateRecord extends StateFields {
  t: 's';
}

interface HeaderRecord {
  t: 'h';
  v: number;
}

function stateFields(m: StoredMessage): StateFields {
  const s: StateFields = { id: m.id, status: m.status, attempts: m.attempts };
  if (m.nextAttemptAt) s.nextAttemptAt = m.nextAttemptAt.getTime();
  if (m.deliveredAt) s.deliveredAt = m.deliveredAt.getTime();
  if (m.ackedAt) s.ackedAt = m.ackedAt.getTime();
  if (m.failedAt) s.failedAt = m.failedAt.getTime();
  if (m.failReason !== undefined) s.failReason = m.failReason;
  return s;
}

function messageRecord(m: StoredMessage): MessageRecord {
  const r: MessageRecord = {
    t: 'm',
    to: m.to,
    payload: m.payload,
    createdAt: m.createdAt.getTime(),
    expiresAt: m.expiresAt.getTime(),
    ...stateFields(m),
  };
  if (m.key !== undefined) r.key = m.key;
  return r;
}

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function optionalTime(r: Record<string, unknown>, field: string): Date | undefined {
  const v = r[field];
  if (v === undefined) return undefined;
  if (!isTime(v)) throw new Error(`${field} is not a time`);
  return new Date(v);
}

/** Sets the state fields of `m` from a record; throws when the record is malformed. */
function applyState(m: StoredMessage, r: Record<string, unknown>): void {
  if (!STATUSES.includes(r.status as MessageStatus)) throw new Error('bad status');
  if (typeof r.attempts !== 'number') throw new Error('bad attempts');
  if (r.failReason !== undefined && typeof r.failReason !== 'string') {
    throw new Error('bad failReason');
  }
  const times = {
    nextAttemptAt: optionalTime(r, 'nextAttemptAt'),
    deliveredAt: optionalTime(r, 'deliveredAt'),
    ackedAt: optionalTime(r, 'ackedAt'),
    failedAt: optionalTime(r, 'failedAt'),
  };
  m.status = r.status as MessageStatus;
  m.attempts = r.attempts;
  for (const [field, value] of Object.entries(times) as [keyof typeof times, Date | undefined][]) {
    if (value) m[field] = value;
    else delete m[field];
  }
  if (typeof r.failReason === 'string') m.failReason = r.failReason;
  else delete m.failReason;
}

/**
 * Keeps everything in this process: for development and for tests without a mongod. Messages
 * are lost on restart unless the store is opened with a journal (`MemoryStore.open`).
 */
export class MemoryStore implements MessageStore {
  readonly kind = 'memory' as const;

  private readonly byId = new Map<string, StoredMessage>();
  /** Per user, the pending and delivered messages, kept sorted so listUnacked reads only what
   *  it returns (plus any expired ones the sweeper has not reached yet). */
  private readonly unackedByUser = new Map<string, StoredMessage[]>();
  private readonly byKey = new Map<string, string>();
  /** The ids of the messages that have a nextAttemptAt: all that claimDue needs to look at. */
  private readonly due = new Set<string>();
  private readonly sweeper: NodeJS.Timeout;
  private journal: Journal | undefined;
  private closed = false;

  /** A store without a journal; use `MemoryStore.open` for one with a journal. */
  constructor(opts: MemoryStoreOptions = {}) {
    if (opts.journalPath !== undefined) {
      throw new Error('a journaled MemoryStore is opened with MemoryStore.open');
    }
    this.sweeper = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? 60_000);
    // The sweeper is housekeeping: it must not keep a process alive that has nothing else to do.
    this.sweeper.unref();
  }

  /**
   * A store, journaled when `journalPath` is given: the state is read back from the file
   * (a line torn by a crash mid-write is skipped, expired messages are dropped) and the file is
   * rewritten with only the live messages.
   */
  static async open(opts: MemoryStoreOptions = {}): Promise<MemoryStore> {
    const { journalPath, ...rest } = opts;
    const store = new MemoryStore(rest);
    if (journalPath === undefined) return store;
    try {
      await store.replay(journalPath);
      store.journal = await Journal.create(journalPath, () => store.snapshot(), {
        compactMinBytes: opts.journalCompactBytes,
        log: opts.log,
      });
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** How many messages are held, expired-but-unswept included. */
  get size(): number {
    return this.byId.size;
  }

  /** The journal's counters, when there is one. */
  get journalStats(): JournalStats | undefined {
    return this.journal?.stats;
  }

  async insert(messages: NewMessage[]): Promise<InsertResult> {
    if (this.journal) {
      if (this.closed) throw new Error('MemoryStore is closed');
      if (this.journal.failure) throw this.journal.failure;
    }
    const now = Date.now();
    const ids: string[] = [];
    const inserted: StoredMessage[] = [];
    // Check every id first so a rejected call leaves nothing behind, like one failed write.
    const freshIds = new Set<string>();
    const freshKeys = new Set<string>();
    for (const m of messages) {
      if (m.key !== undefined) {
        const k = idempotencyKey(m.key, m.to);
        if (freshKeys.has(k) || this.liveByKey(m.key, m.to, now)) continue;
        freshKeys.add(k);
      }
      if (this.byId.has(m.id) || freshIds.has(m.id)) {
        throw new Error(`message id ${m.id} is already stored`);
      }
      freshIds.add(m.id);
    }
    // Build everything before changing anything: a payload that cannot be copied or journaled
    // fails the call with nothing stored.
    const batchKeys = new Map<string, string>();
    const fresh: StoredMessage[] = [];
    const lines: string[] = [];
    for (const m of messages) {
      if (m.key !== undefined) {
        const k = idempotencyKey(m.key, m.to);
        const existing = this.liveByKey(m.key, m.to, now)?.id ?? batchKeys.get(k);
        if (existing !== undefined) {
          ids.push(existing);
          continue;
        }
        batchKeys.set(k, m.id);
      }
      const stored: StoredMessage = {
        id: m.id,
        to: m.to,
        // The caller keeps its objects: later changes to them must not reach the store.
        payload: structuredClone(m.payload),
        createdAt: new Date(m.createdAt.getTime()),
        status: 'pending',
        attempts: 0,
        expiresAt: new Date(m.expiresAt.getTime()),
      };
      if (m.key !== undefined) stored.key = m.key;
      if (m.nextAttemptAt !== undefined) stored.nextAttemptAt = new Date(m.nextAttemptAt.getTime());
      if (this.journal) lines.push(JSON.stringify(messageRecord(stored)));
      fresh.push(stored);
      ids.push(stored.id);
    }
    for (const stored of fresh) {
      this.add(stored);
      inserted.push(structuredClone(stored));
    }
    if (this.journal) {
      for (const line of lines) this.journal.write(line);
      // Also when nothing was new: a repeated key may name a message whose write is under way.
      // When the write fails the messages stay in memory (and may be delivered), but the caller
      // is told they were not stored, and the store refuses writes from then on.
      await this.journal.commit();
    }
    return { ids, inserted };
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const m = this.byId.get(id);
    if (!m || isExpired(m, Date.now())) return undefined;
    return structuredClone(m);
  }

  async markDelivered(ids: string[], at: Date, retry: AckRetry): Promise<void> {
    for (const id of ids) {
      const m = this.byId.get(id);
      if (!m || !isOpen(m)) continue;
      m.attempts++;
      m.status = 'delivered';
      m.deliveredAt = new Date(at.getTime());
      this.setNextAttempt(m, at.getTime() + ackRetryDelay(retry, m.attempts));
      this.journalState(m);
    }
  }

  async markUnrouted(ids: string[]): Promise<void> {
    for (const id of ids) {
      const m = this.byId.get(id);
      if (m?.status !== 'pending' || !m.nextAttemptAt) continue;
      this.setNextAttempt(m, undefined);
      this.journalState(m);
    }
  }

  async retryAt(ids: string[], at: Date): Promise<void> {
    for (const id of ids) {
      const m = this.byId.get(id);
      if (!m || !isOpen(m)) continue;
      this.setNextAttempt(m, at.getTime());
      this.journalState(m);
    }
  }

  async markAcked(userId: string, ids: string[], at: Date): Promise<number> {
    let changed = 0;
    for (const id of ids) {
      const m = this.byId.get(id);
      if (!m || m.to !== userId || m.status === 'acked') continue;
      if (isOpen(m)) this.removeUnacked(m);
      m.status = 'acked';
      m.ackedAt = new Date(at.getTime());
      this.setNextAttempt(m, undefined);
      this.journalState(m);
      changed++;
    }
    return changed;
  }

  async markFailed(ids: string[], at: Date, reason: string): Promise<void> {
    for (const id of ids) {
      const m = this.byId.get(id);
      if (!m || !isOpen(m)) continue;
      this.removeUnacked(m);
      m.status = 'failed';
      m.failedAt = new Date(at.getTime());
      m.failReason = reason;
      this.setNextAttempt(m, undefined);
      this.journalState(m);
    }
  }

  async claimDue(now: Date, limit: number, leaseMs: number): Promise<StoredMessage[]> {
    if (limit <= 0) return [];
    const t = now.getTime();
    const clock = Date.now();
    // The `limit` earliest due messages, in a max-heap on (nextAttemptAt, id): one pass over the
    // messages that have a nextAttemptAt, O(n log limit).
    const heap: StoredMessage[] = [];
    for (const id of this.due) {
      const m = this.byId.get(id)!;
      if (m.nextAttemptAt!.getTime() > t || isExpired(m, clock)) continue;
      if (heap.length < limit) {
        heap.push(m);
        siftUp(heap, heap.length - 1);
      } else if (dueBefore(m, heap[0]!)) {
        heap[0] = m;
        siftDown(heap, 0);
      }
    }
    heap.sort((a, b) => (dueBefore(a, b) ? -1 : 1));
    for (const m of heap) {
      this.setNextAttempt(m, t + leaseMs);
      this.journalState(m);
    }
    return heap.map((m) => structuredClone(m));
  }

  async listUnacked(userId: string, limit: number): Promise<StoredMessage[]> {
    const list = this.unackedByUser.get(userId);
    const out: StoredMessage[] = [];
    if (!list || limit <= 0) return out;
    const now = Date.now();
    for (const m of list) {
      if (isExpired(m, now)) continue;
      out.push(structuredClone(m));
      if (out.length >= limit) break;
    }
    return out;
  }

  async countByStatus(): Promise<Record<MessageStatus, number>> {
    const counts: Record<MessageStatus, number> = { pending: 0, delivered: 0, acked: 0, failed: 0 };
    const now = Date.now();
    for (const m of this.byId.values()) {
      if (!isExpired(m, now)) counts[m.status]++;
    }
    return counts;
  }

  async ping(): Promise<void> {
    if (!this.journal) return;
    if (this.journal.failure) throw this.journal.failure;
    if (this.closed) throw new Error('MemoryStore is closed');
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    await this.journal?.close();
  }

  /** Drops the messages expired at `now`; returns how many. Runs on a timer; public for tests.
   *  Not journaled: a reopened store drops expired messages itself. */
  sweep(now: number = Date.now()): number {
    let removed = 0;
    for (const m of this.byId.values()) {
      if (!isExpired(m, now)) continue;
      this.byId.delete(m.id);
      this.due.delete(m.id);
      if (isOpen(m)) this.removeUnacked(m);
      if (m.key !== undefined) {
        const k = idempotencyKey(m.key, m.to);
        if (this.byKey.get(k) === m.id) this.byKey.delete(k);
      }
      removed++;
    }
    return removed;
  }

  /** Indexes a new message. */
  private add(m: StoredMessage): void {
    this.byId.set(m.id, m);
    if (m.key !== undefined) this.byKey.set(idempotencyKey(m.key, m.to), m.id);
    if (m.nextAttemptAt) this.due.add(m.id);
    if (isOpen(m)) this.addUnacked(m);
  }

  private setNextAttempt(m: StoredMessage, at: number | undefined): void {
    if (at === undefined) {
      delete m.nextAttemptAt;
      this.due.delete(m.id);
    } else {
      m.nextAttemptAt = new Date(at);
      this.due.add(m.id);
    }
  }

  /** Journals a change of state; the caller does not wait for it to reach the disk. */
  private journalState(m: StoredMessage): void {
    if (!this.journal) return;
    const r: StateRecord = { t: 's', ...stateFields(m) };
    this.journal.write(JSON.stringify(r));
  }

  /** The lines of a journal holding the live messages. */
  private *snapshot(): Generator<string> {
    const header: HeaderRecord = { t: 'h', v: JOURNAL_VERSION };
    yield JSON.stringify(header);
    // Read the clock per message: the snapshot is written in chunks, other work in between.
    for (const m of this.byId.values()) {
      if (!isExpired(m, Date.now())) yield JSON.stringify(messageRecord(m));
    }
  }

  /** Rebuilds the state from a journal file; expired messages are left out. */
  private async replay(path: string): Promise<void> {
    const loaded = new Map<string, StoredMessage>();
    await readJournal(path, (record) => {
      if (typeof record !== 'object' || record === null) throw new Error('not an object');
      const r = record as Record<string, unknown>;
      if (r.t === 'h') {
        if (r.v !== JOURNAL_VERSION) throw new Error(`unknown journal version ${String(r.v)}`);
        return;
      }
      if (typeof r.id !== 'string') throw new Error('no id');
      if (r.t === 's') {
        // A message dropped from the file (it expired) may still have a later change.
        const m = loaded.get(r.id);
        if (m) applyState(m, r);
        return;
      }
      if (r.t !== 'm') throw new Error(`unknown record type ${String(r.t)}`);
      if (typeof r.to !== 'string' || !isTime(r.createdAt) || !isTime(r.expiresAt)) {
        throw new Error('bad message record');
      }
      if (r.key !== undefined && typeof r.key !== 'string') throw new Error('bad key');
      const m: StoredMessage = {
        id: r.id,
        to: r.to,
        payload: r.payload,
        createdAt: new Date(r.createdAt),
        status: 'pending',
        attempts: 0,
        expiresAt: new Date(r.expiresAt),
      };
      if (typeof r.key === 'string') m.key = r.key;
      applyState(m, r);
      loaded.set(m.id, m);
    });
    const now = Date.now();
    const live = [...loaded.values()].filter((m) => !isExpired(m, now));
    // Sorted once, so that building the per-user lists only appends.
    live.sort((a, b) => (before(a, b) ? -1 : 1));
    for (const m of live) this.add(m);
  }

  /** An expired message no longer claims its key, as if the sweeper had already run. */
  private liveByKey(key: string, to: string, now: number): StoredMessage | undefined {
    const id = this.byKey.get(idempotencyKey(key, to));
    if (id === undefined) return undefined;
    const m = this.byId.get(id);
    return m && !isExpired(m, now) ? m : undefined;
  }

  private addUnacked(m: StoredMessage): void {
    let list = this.unackedByUser.get(m.to);
    if (!list) {
      list = [];
      this.unackedByUser.set(m.to, list);
    }
    const last = list[list.length - 1];
    // Messages nearly always arrive in order: append without searching.
    if (!last || before(last, m)) {
      list.push(m);
      return;
    }
    list.splice(this.position(list, m), 0, m);
  }

  private removeUnacked(m: StoredMessage): void {
    const list = this.unackedByUser.get(m.to);
    if (!list) return;
    const i = this.position(list, m);
    if (list[i] === m) list.splice(i, 1);
    if (list.length === 0) this.unackedByUser.delete(m.to);
  }

  /** First index whose message does not sort before `m`. */
  private position(list: StoredMessage[], m: StoredMessage): number {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(list[mid]!, m)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

// A max-heap on dueBefore: the root is the latest due of the kept messages.

function siftUp(heap: StoredMessage[], i: number): void {
  const m = heap[i]!;
  while (i > 0) {
    const parent = (i - 1) >>> 1;
    if (!dueBefore(heap[parent]!, m)) break;
    heap[i] = heap[parent]!;
    i = parent;
  }
  heap[i] = m;
}

function siftDown(heap: StoredMessage[], i: number): void {
  const m = heap[i]!;
  const n = heap.length;
  for (;;) {
    let child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && dueBefore(heap[child]!, heap[child + 1]!)) child++;
    if (!dueBefore(m, heap[child]!)) break;
    heap[i] = heap[child]!;
    i = child;
  }
  heap[i] = m;
}
