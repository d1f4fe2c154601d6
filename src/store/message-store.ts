import type { MessageStatus } from '../protocol/public-api.js';

/** A message as the store keeps it. */
export interface StoredMessage {
  id: string;
  to: string;
  payload: unknown;
  /** The payload as compact JSON, when it is at hand (ingestion serialized it to check its
   *  size; SQLite keeps it as text): frames are then built without serializing it again. */
  payloadJson?: string;
  createdAt: Date;
  /**
   * pending: not yet pushed to any socket; delivered: pushed, not acked; acked: done;
   * failed: pushed `attempts` times and never acked (see failReason).
   */
  status: MessageStatus;
  /** How many times the message was pushed to a socket of its user. */
  attempts: number;
  /**
   * When the sweeper should look at the message again: a pending message whose hand-off
   * may have been lost, or a delivered message whose ack is overdue. Unset when nothing
   * is due: a pending message of a user with no route waits for the user's connect.
   */
  nextAttemptAt?: Date;
  deliveredAt?: Date;
  ackedAt?: Date;
  failedAt?: Date;
  failReason?: string;
  /** The sender's idempotency key (`idempotencyKey` on the wire), when it gave one. */
  idempotencyKey?: string;
  /** When the store may forget the message. */
  expiresAt: Date;
}

/** A message to store, as pending with no attempts: the store keeps what it is given. */
export type NewMessage = Pick<
  StoredMessage,
  | 'id'
  | 'to'
  | 'payload'
  | 'payloadJson'
  | 'createdAt'
  | 'idempotencyKey'
  | 'expiresAt'
  | 'nextAttemptAt'
>;

/** A message of an insert call that the store cannot take, for a reason that a retry of the
 *  same message would not change (a payload it cannot serialize, an id already stored). */
export interface Refusal {
  /** The message's index in the insert call. */
  index: number;
  reason: string;
  /** Set when the message's (idempotency key, to) is held by a live stored message with a
   *  different payload: that message's id. A key names one message; its retry must carry
   *  the same payload (compared as JSON text), or it would be dropped while its sender heard
   *  it was accepted. */
  keyHeldBy?: string;
}

/** The reason of a refusal with `keyHeldBy`, in every store's words. */
export function keyConflict(heldBy: string): string {
  return `its idempotencyKey already names message ${heldBy}, whose payload differs`;
}

/**
 * The outcome of one insert call. A call is all or nothing: either every message is stored
 * (or resolved to the stored holder of its idempotency key) and `refused` is empty, or some messages are
 * refused and none of the call's messages is stored (`ids` and `inserted` empty). A failure
 * whose outcome is unknown or passing (store unreachable, write concern timeout, disk error)
 * rejects the call instead: the caller may retry it.
 */
export interface InsertResult {
  /** One id per input message, in input order. For a message whose (idempotency key, to) was stored
   *  before, the id of the stored one. */
  ids: string[];
  /** The messages that were new, in input order: only these are to be dispatched. */
  inserted: StoredMessage[];
  /** The messages refused, in input order; when not empty, nothing of the call was stored. */
  refused: Refusal[];
}

/** Where a page of a user's unacked messages starts: after this message, in store order
 *  (createdAt, then id). */
export interface UnackedCursor {
  createdAt: Date;
  id: string;
}

/** How long an acked message is kept by default (ACKED_RETENTION). */
export const DEFAULT_ACKED_RETENTION_MS = 3_600_000;

/** When an unacked push is retried: after base × 2^(attempts − 1), at most max. */
export interface AckRetry {
  baseMs: number;
  maxMs: number;
}

/**
 * Where messages live from ingestion until they are purged. Two implementations: SQLite
 * (one file: single-node deployments, development, tests) and MongoDB (replicated, shared by
 * any number of collect instances). Payloads are stored as their JSON text, so any JSON value
 * the ingestion accepts is stored and read back exactly.
 *
 * A message is kept until `expiresAt`, or once acked until `ackedAt` + the acked retention
 * if that comes first; then the store deletes it (`purge`, or MongoDB's TTL monitor).
 */
/** Message ids one user acked. */
export interface UserAcks {
  userId: string;
  ids: readonly string[];
}

export interface MessageStore {
  readonly kind: 'sqlite' | 'mongodb';
  /**
   * Resolves only once the messages are durably stored. Idempotent on (idempotency key, to): a message
   * whose pair is held by a live (unexpired) message resolves to that message's id. See
   * InsertResult for refusals.
   */
  insert(messages: NewMessage[]): Promise<InsertResult>;
  /** The message, unless it expired (or was purged). */
  get(id: string): Promise<StoredMessage | undefined>;
  /**
   * Records a push to a socket: pending or delivered → delivered, attempts + 1,
   * deliveredAt = at, nextAttemptAt = at + the ack retry delay for the new attempt count.
   * Acked and failed messages are left alone.
   */
  markDelivered(ids: string[], at: Date, retry: AckRetry): Promise<void>;
  /** The user has no live route: the open (pending or delivered) message waits for the
   *  user's next connect or re-bind, which replays it (nextAttemptAt unset): no churn. */
  markUnrouted(ids: string[]): Promise<void>;
  /** Hand-off failed: look at pending or delivered messages again at `at`. */
  retryAt(ids: string[], at: Date): Promise<void>;
  /** → acked (nextAttemptAt unset), only for messages addressed to the user who acked them
   *  and not acked yet (a failed message can still be acked); deliveredAt is set to `at`
   *  and attempts to 1 where no delivery was recorded. The acks of many users in one write.
   *  Returns how many changed. */
  markAcked(acks: readonly UserAcks[], at: Date): Promise<number>;
  /** pending or delivered → failed, with the reason; nextAttemptAt unset. */
  markFailed(ids: string[], at: Date, reason: string): Promise<void>;
  /**
   * Pending or delivered messages whose nextAttemptAt ≤ now, oldest first, at most
   * `limit`. Each returned message's nextAttemptAt is moved to now + leaseMs, so a sweeper
   * that dies mid-way leaves them due again rather than forgotten.
   */
  claimDue(now: Date, limit: number, leaseMs: number): Promise<StoredMessage[]>;
  /** The user's messages not yet acked nor failed (pending or delivered), oldest first. */
  listUnacked(userId: string, limit: number, after?: UnackedCursor): Promise<StoredMessage[]>;
  /**
   * How many messages are held in each status (for metrics and the chaos suite), from a cheap
   * source: never a scan of every message per call. SQLite: exact counters, where an expired
   * message counts until it is purged. MongoDB: counts of unexpired messages, refreshed in the
   * background at most every `countRefreshMs`.
   */
  countByStatus(): Promise<Record<MessageStatus, number>>;
  /**
   * Deletes up to `limit` messages that expired or whose acked retention ran out; returns
   * how many. SQLite also runs it by itself on a timer; MongoDB's TTL index does the same.
   */
  purge(now: Date, limit?: number): Promise<number>;
  /** Resolves when the store can take writes; rejects with the reason otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
