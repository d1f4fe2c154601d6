import { z } from 'zod';
import { userIdSchema } from '../core/validation.js';

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

export const ingestSchema = z.union([
  oneMessage,
  z
    .object({
      messages: z
        .array(oneMessage)
        .min(1, 'must hold at least one message')
        .max(MAX_MESSAGES_PER_REQUEST),
    })
    .strict(),
]);

export type IngestBody = z.infer<typeof ingestSchema>;
export type IngestMessage = z.infer<typeof oneMessage>;

/** The messages of a request, one per recipient, in request order. */
export function recipientsOf(body: IngestBody): { to: string; payload: unknown; key?: string }[] {
  const items: IngestMessage[] = 'messages' in body ? body.messages : [body];
  const out: { to: string; payload: unknown; key?: string }[] = [];
  for (const item of items) {
    for (const to of Array.isArray(item.to) ? item.to : [item.to])
      out.push({ to, payload: item.payload, key: item.id });
  }
  return out;
}
