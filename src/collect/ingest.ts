import { HttpError } from '../core/http.js';
import type { InsertResult, MessageStore, NewMessage } from '../store/message-store.js';
import type { Recipient } from './ingest-schema.js';

export interface IngestOptions {
  store: MessageStore;
  /** A new message id, sortable by time (a ULID). */
  newId: (nowMs: number) => string;
  /** MESSAGE_TTL_SECONDS, in ms. */
  ttlMs: number;
  /** HANDOFF_GRACE: when the sweeper picks up a message whose hand-off left no trace. */
  handoffGraceMs: number;
  /** The store could not be written (for the metric and the log). */
  onStoreFailed(err: Error, messages: number): void;
}

/**
 * Stores one request's messages, one per recipient, and resolves once the store holds
 * them durably: only then may the request be answered 202. A store that cannot write is a
 * 503 (nothing was accepted: retry); a message the store refuses refuses the whole request
 * with a 400, or a 422 when its idempotency key names a stored message with another payload,
 * and none of it is kept.
 */
export async function ingest(
  recipients: readonly Recipient[],
  now: Date,
  o: IngestOptions,
): Promise<InsertResult> {
  refuseKeyRepeatedWithOtherPayload(recipients);
  const expiresAt = new Date(now.getTime() + o.ttlMs);
  // Due for the sweeper unless the hand-off records an outcome first: a crash between the
  // 202 and the hand-off loses nothing.
  const nextAttemptAt = new Date(now.getTime() + o.handoffGraceMs);
  const messages: NewMessage[] = recipients.map((m) => ({
    id: o.newId(now.getTime()),
    to: m.to,
    payload: m.payload,
    payloadJson: m.payloadJson,
    idempotencyKey: m.idempotencyKey,
    createdAt: now,
    expiresAt,
    nextAttemptAt,
  }));
  let result: InsertResult;
  try {
    result = await o.store.insert(messages);
  } catch (err) {
    o.onStoreFailed(err as Error, messages.length);
    throw new HttpError(
      503,
      'store_unavailable',
      'the message store cannot take messages right now: nothing was accepted, retry',
    );
  }
  const refused = result.refused[0];
  if (refused?.keyHeldBy !== undefined) {
    const m = messages[refused.index];
    throw conflict(
      `idempotencyKey ${JSON.stringify(m?.idempotencyKey)} for user ${JSON.stringify(m?.to)} ` +
        `already names message ${refused.keyHeldBy}, whose payload differs`,
    );
  }
  if (refused) {
    throw new HttpError(
      400,
      'invalid_request',
      `message ${refused.index} cannot be stored (${refused.reason}): nothing was accepted`,
    );
  }
  return result;
}

/** A request that names one (idempotency key, user) twice with different payloads: the store
 *  would keep neither, and name a message of the request that was never stored. */
function refuseKeyRepeatedWithOtherPayload(recipients: readonly Recipient[]): void {
  const payloadOf = new Map<string, string>();
  for (const m of recipients) {
    if (m.idempotencyKey === undefined) continue;
    const pair = `${m.idempotencyKey}\u0000${m.to}`;
    const first = payloadOf.get(pair);
    if (first === undefined) payloadOf.set(pair, m.payloadJson);
    else if (first !== m.payloadJson)
      throw conflict(
        `idempotencyKey ${JSON.stringify(m.idempotencyKey)} for user ${JSON.stringify(m.to)} ` +
          'comes twice in this request, with different payloads',
      );
  }
}

function conflict(what: string): HttpError {
  return new HttpError(
    422,
    'idempotency_conflict',
    `${what}. An idempotency key names one message to a user: a retry must carry the same ` +
      'payload, and another message needs a key of its own. Nothing was accepted',
  );
}
