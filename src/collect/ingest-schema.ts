import { z } from 'zod';
import { HttpError } from '../core/http.js';
import { validate } from '../core/validation.js';
import { userIdSchema } from '../protocol/user-id.js';

/** Most messages one request may create (recipients × messages). */
export const MAX_MESSAGES_PER_REQUEST = 10_000;

const oneMessage = z
  .object({
    to: z.union([
      userIdSchema,
      z.array(userIdSchema).min(1, 'must name at least one user').max(MAX_MESSAGES_PER_REQUEST),
    ]),
    payload: z.unknown(),
    id: z.string().min(1).max(128).optional(),
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
  key?: string;
}

/**
 * Validates either body form and lists its messages, one per recipient, in request
 * order. The form is chosen by the `messages` field, so that a 400 names the field
 * that is wrong rather than saying that neither form matched.
 */
export function parseIngestBody(value: unknown): Recipient[] {
  const isBatch =
    typeof value === 'object' && value !== null && !Array.isArray(value) && 'messages' in value;
  const items = isBatch ? validate(batch, value).messages : [validate(oneMessage, value)];
  const out: Recipient[] = [];
  for (const item of items) {
    for (const to of Array.isArray(item.to) ? item.to : [item.to]) {
      out.push({ to, payload: item.payload, key: item.id });
    }
  }
  if (out.length > MAX_MESSAGES_PER_REQUEST) {
    throw new HttpError(
      400,
      'invalid_request',
      `one request may create at most ${MAX_MESSAGES_PER_REQUEST} messages, this one ${out.length}`,
    );
  }
  return out;
}
