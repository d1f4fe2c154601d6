import { z } from 'zod';
import { HttpError } from '../core/http.js';
import { validate } from '../core/validation.js';
import { identifierSchema } from '../protocol/identifier.js';
import { userIdSchema } from '../protocol/user-id.js';
import { refuseInexactNumbers } from './exact-numbers.js';
import { checkPayload, type MessageLimits } from './message-limits.js';

/** Most messages one request may create (recipients × messages). */
export const MAX_MESSAGES_PER_REQUEST = 10_000;

/** The longest idempotency key. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;

const oneMessage = z
  .object({
    to: z.union([
      userIdSchema,
      z.array(userIdSchema).min(1, 'must name at least one user').max(MAX_MESSAGES_PER_REQUEST),
    ]),
    payload: z.unknown(),
    idempotencyKey: identifierSchema(MAX_IDEMPOTENCY_KEY_LENGTH).optional(),
  })
  .strict()
  .refine((m) => m.payload !== undefined, {
    message: 'payload is required (any JSON value)',
    path: ['payload'],
  });

const batch = z
  .object({
    messages: z
      .array(oneMessage)
      .min(1, 'must hold at least one message')
      .max(MAX_MESSAGES_PER_REQUEST),
  })
  .strict();

export type IngestMessage = z.infer<typeof oneMessage>;
export type IngestBody = IngestMessage | z.infer<typeof batch>;
export interface Recipient {
  to: string;
  payload: unknown;
  /** The payload as compact JSON (serialized once, to check its size). */
  payloadJson: string;
  idempotencyKey?: string;
}

/** Until 0.1.0 the idempotency key was sent as `id`: say what it is called now. */
function refuseRenamedKey(message: unknown, where: string): void {
  if (typeof message === 'object' && message !== null && 'id' in message)
    throw new HttpError(
      400,
      'invalid_request',
      `${where}id: the idempotency key is sent as "idempotencyKey" (it was "id" until 0.1.0)`,
    );
}

/**
 * Validates either body form and lists its messages, one per recipient, in request
 * order. The form is chosen by the `messages` field, so that a 400 names the field
 * that is wrong rather than saying that neither form matched. Every payload is checked
 * against the limits here, before anything is stored: a message the store or a later
 * hop could not carry is refused now, with the limit it breaks. `body` is the parsed value
 * with its text (readJsonText); the text is read only to check numbers (exact-numbers.ts).
 */
export function parseIngestBody(
  body: { value: unknown; text: string },
  limits: MessageLimits,
): Recipient[] {
  const { value } = body;
  const isBatch =
    typeof value === 'object' && value !== null && !Array.isArray(value) && 'messages' in value;
  const given = isBatch ? (value as { messages?: unknown }).messages : [value];
  if (Array.isArray(given))
    given.forEach((m, i) => refuseRenamedKey(m, isBatch ? `messages.${i}.` : ''));
  const items = isBatch ? validate(batch, value).messages : [validate(oneMessage, value)];
  const out: Recipient[] = [];
  let requestBytes = 0;
  let doubtfulNumbers = false;
  items.forEach((item, i) => {
    const where = isBatch ? `messages.${i}.payload` : 'payload';
    const { json, bytes, doubtfulNumbers: doubtful } = checkPayload(item.payload, limits, where);
    doubtfulNumbers ||= doubtful;
    const recipients = Array.isArray(item.to) ? item.to : [item.to];
    requestBytes += bytes * recipients.length;
    for (const to of recipients)
      out.push({
        to,
        payload: item.payload,
        payloadJson: json,
        idempotencyKey: item.idempotencyKey,
      });
  });
  if (requestBytes > limits.maxRequestPayloadBytes) {
    throw new HttpError(
      400,
      'limit_exceeded',
      `this request would store ${requestBytes} payload bytes (payload × recipients), more than ` +
        `MAX_REQUEST_PAYLOAD_BYTES (${limits.maxRequestPayloadBytes}): split it`,
    );
  }
  // The body's text is read only when a payload holds a number that may not be its literal.
  if (doubtfulNumbers) refuseInexactNumbers(body.text);
  if (out.length > MAX_MESSAGES_PER_REQUEST) {
    throw new HttpError(
      400,
      'invalid_request',
      `one request may create at most ${MAX_MESSAGES_PER_REQUEST} messages, this one ${out.length}`,
    );
  }
  return out;
}
