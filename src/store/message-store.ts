import type { MessageStatus } from '../protocol/public-api.js';

/** A message as the store keeps it. */
export interface StoredMessage {
  id: string;
  to: string;
  payload: unknown;
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
  /** The sender's idempotency key, when it gave one. */
  key?: string;
  /** When the store may forget the message. */
  expiresAt: Date;
}

/** A message to store, as pending with no attempts: the store keeps what it is given. */
export type NewMessage = Pick<
  StoredMessage,
  'id' | 'to' | 'payload' | 'createdAt' | 'key' | 'expiresAt' | 'nextAttemptAt'
>;

export interface InsertResult {
  /** One id per input message, in input order. For a message whose (key, to) was stored
   *  before, the id of the stored one. */
  ids: string[];
  /** The messages that were new, in input order: only these are to be dispatched. */
  inserted: StoredMessage[];
}

/** When an unacked push is retried: after base × 2^(attempts − 1), at most max. */
export interface AckRetry {
  baseMs: number;
  maxMs: number;
}

/**
 * Where messages live from ingestion until they expire. Two implementations:
 * MongoDB (production) and memory (development and tests without a mongod; optionally
 * journaled to a file so that it survives a restart).
 */
export interface MessageStore {
  readonly kind: 'mongodb' | 'memory';
  /** Resolves only once the messages are durably stored. Idempotent on (key, to). */
  insert(messages: NewMessage[]): Promise<InsertResult>;
  get(id: string): Promise<StoredMessage | undefined>;
  /**
   * Records a push to a socket: pending or delivered → delivered, attempts + 1,
   * deliveredAt = at, nextAttemptAt = at + the ack retry delay for the new attempt count.
   * Acked and failed messages are left alone.
   */
  markDelivered(ids: string[], at: Date, retry: AckRetry): Promise<void>;
  /** The user has no live route: the pending message waits for a connect (nextAttemptAt unset).
   *  Only touches pending messages. */
  markUnrouted(ids: string[]): Promise<void>;
  /** Hand-off failed: look at pending or delivered messages again at `at`. */
  retryAt(ids: string[], at: Date): Promise<void>;
  /** → acked (nextAttemptAt unset), only for messages addressed to `userId` that are not
   *  acked yet (a failed message can still be acked). Returns how many changed. */
  markAcked(userId: string, ids: string[], at: Date): Promise<number>;
  /** pending or delivered → failed, with the reason; nextAttemptAt unset. */
  markFailed(ids: string[], at: Date, reason: string): Promise<void>;
  /**
   * Pending or delivered messages whose nextAttemptAt ≤ now, oldest first, at most
   * `limit`. Each returned message's nextAttemptAt is moved to now + leaseMs, so a sweeper
   * that dies mid-way leaves them due again rather than forgotten.
   */
  claimDue(now: Date, limit: number, leaseMs: number): Promise<StoredMessage[]>;
  /** The user's messages not yet acked nor failed (pending or delivered), oldest first. */
  listUnacked(userId: string, limit: number): Promise<StoredMessage[]>;
  /** How many messages are in each status (for metrics and the chaos suite). */
  countByStatus(): Promise<Record<MessageStatus, number>>;
  /** Resolves when the store can take writes; rejects with the reason otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
