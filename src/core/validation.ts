import { z } from 'zod';
import { HttpError } from './http.js';

/** A user id as every service accepts it. */
export const userIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters')
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  .refine((s) => !/[\u0000-\u001f]/.test(s), 'must not contain control characters');

/** Validates a parsed body, turning every problem into one 400 a client can act on. */
export function validate<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.slice(0, 5).map((i) => {
    const where = i.path.length > 0 ? i.path.join('.') : 'body';
    return `${where}: ${i.message}`;
  });
  throw new HttpError(400, 'invalid_request', problems.join('; '));
}

/** The body of the internal hand-offs (collect → dispatch → push node): `{ messages: Envelope[] }`. */
export const envelopeBatchSchema = z.object({
  messages: z.array(
    z.object({ id: z.string(), to: z.string(), payload: z.unknown(), createdAt: z.string() }),
  ),
});
