import type { MessageStatus } from '../core/protocol.js';

/** A message as the store keeps it. */
export interface StoredMessage {
  id: string;
  to: string;
  payload: unknown;
  createdAt: Date;
  status: MessageStatus;
  deliveredAt?: Date;
  ackedAt?: Date;
  /** The sender's idempotency key, when it gave one. */
  key?: string;
  /** When the store may forget the message. */
  expiresAt: Date;
}

/** A message to store: the store assigns nothing but keeps what it is given. */
export type NewMessage = Omit<StoredMessage, 'status' | 'deliveredAt' | 'ackedAt'>;

export interface InsertResult {
  /** One id per input message, in input order. For a message whose (key, to) was stored
   *  before, the id of the stored one. */
  ids: string[];
  /** The messages that were new, in input order: only these are to be dispatched. */
  inserted: StoredMessage[];
}

/**
 * Where messages live from ingestion until they expire. Two implementations:
 * MongoDB (production) and memory (development and tests without a mongod).
 */
export interface MessageStore {
  readonly kind: 'mongodb' | 'memory';
  /** Resolves only once the messages are durably stored. Idempotent on (key, to). */
  insert(messages: NewMessage[]): Promise<InsertResult>;
  get(id: string): Promise<StoredMessage | undefined>;
  /** pending → delivered; leaves acked messages alone. */
  markDelivered(ids: string[], at: Date): Promise<void>;
  /** → acked, only for messages addressed to `userId`. Returns how many changed. */
  markAcked(userId: string, ids: string[], at: Date): Promise<number>;
  /** The user's messages not yet acked (pending or delivered), oldest first. */
  listUnacked(userId: string, limit: number): Promise<StoredMessage[]>;
  /** Resolves when the store can take writes; rejects with the reason otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
