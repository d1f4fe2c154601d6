import { z } from 'zod';

/** The longest user id. */
export const MAX_USER_ID_LENGTH = 256;

/**
 * A user id as every service accepts it: ingestion (`to`), auth (a token's `sub`, when
 * minted and when verified) and every internal hop.
 */
export const userIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_USER_ID_LENGTH, `must be at most ${MAX_USER_ID_LENGTH} characters`)
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters');
