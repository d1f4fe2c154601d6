import type { z } from 'zod';
import { HttpError } from './http.js';

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
