import { identifierSchema } from './identifier.js';

/** The longest user id. */
export const MAX_USER_ID_LENGTH = 256;

/**
 * A user id as every service accepts it: ingestion (`to`), auth (a token's `sub`, when
 * minted and when verified) and every internal hop.
 */
export const userIdSchema = identifierSchema(MAX_USER_ID_LENGTH);
