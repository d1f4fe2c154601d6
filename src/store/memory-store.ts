import type { InsertResult, MessageStore, NewMessage, StoredMessage } from './message-store.js';

export interface MemoryStoreOptions {
  /** How often expired messages are dropped. Default 60 s. */
  sweepIntervalMs?: number;
}

/** (createdAt, id) order: createdAt alone ties whenever two messages share a millisecond. */
function before(a: StoredMessage, b: StoredMessage): boolean {
  const ta = a.createdAt.getTime();
  const tb = b.createdAt.getTime();
  return ta < tb || (ta === tb && a.id < b.id);
}

function isExpired(m: StoredMessage, now: number): boolean {
  return m.expiresAt.getTime() <= now;
}

function idempotencyKey(key: string, to: string): string {
  return key + '\u0000' + to;
}

/**
 * Keeps everything in this process: for development and for tests without a mongod.
 * Messages are lost on restart.
 */
export class MemoryStore implements MessageStore {
  readonly kind = 'memory' as const;

  private readonly byId = new Map<string, StoredMessage>();
  /** Per user, the messages not yet acked, kept sorted so listUnacked reads only what it returns
   *  (plus any expired ones the sweeper has not reached yet). */
  private readonly unackedByUser = new Map<string, StoredMessage[]>();
  private readonly byKey = new Map<string, string>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(opts: MemoryStoreOptions = {}) {
    this.sweeper = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? 60_000);
    // The sweeper is housekeeping: it must not keep a process alive that has nothing else to do.
    this.sweeper.unref();
  }

  /** How many messages are held, expired-but-unswept included. */
  get size(): number {
    return this.byId.size;
  }

  async insert(messages: NewMessage[]): Promise<InsertResult> {
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
    for (const m of messages) {
      if (m.key !== undefined) {
        const existing = this.liveByKey(m.key, m.to, now);
        if (existing) {
          ids.push(existing.id);
          continue;
        }
      }
      const stored: StoredMessage = {
        id: m.id,
        to: m.to,
        // The caller keeps its objects: later changes to them must not reach the store.
        payload: structuredClone(m.payload),
        createdAt: new Date(m.createdAt.getTime()),
        status: 'pending',
        expiresAt: new Date(m.expiresAt.getTime()),
      };
      if (m.key !== undefined) {
        stored.key = m.key;
        this.byKey.set(idempotencyKey(m.key, m.to), m.id);
      }
      this.byId.set(stored.id, stored);
      this.addUnacked(stored);
      ids.push(stored.id);
      inserted.push(structuredClone(stored));
    }
    return { ids, inserted };
  }

  async get(id: string): Promise<StoredMessage | undefined> {
    const m = this.byId.get(id);
    if (!m || isExpired(m, Date.now())) return undefined;
    return structuredClone(m);
  }

  async markDelivered(ids: string[], at: Date): Promise<void> {
    for (const id of ids) {
      const m = this.byId.get(id);
      if (m?.status !== 'pending') continue;
      m.status = 'delivered';
      m.deliveredAt = new Date(at.getTime());
    }
  }

  async markAcked(userId: string, ids: string[], at: Date): Promise<number> {
    let changed = 0;
    for (const id of ids) {
      const m = this.byId.get(id);
      if (!m || m.to !== userId || m.status === 'acked') continue;
      m.status = 'acked';
      m.ackedAt = new Date(at.getTime());
      this.removeUnacked(m);
      changed++;
    }
    return changed;
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

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Drops the messages expired at `now`; returns how many. Runs on a timer; public for tests. */
  sweep(now: number = Date.now()): number {
    let removed = 0;
    for (const m of this.byId.values()) {
      if (!isExpired(m, now)) continue;
      this.byId.delete(m.id);
      if (m.status !== 'acked') this.removeUnacked(m);
      if (m.key !== undefined) {
        const k = idempotencyKey(m.key, m.to);
        if (this.byKey.get(k) === m.id) this.byKey.delete(k);
      }
      removed++;
    }
    return removed;
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
