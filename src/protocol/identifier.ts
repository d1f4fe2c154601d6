import { z } from 'zod';

/**
 * The text rule every identifier a caller picks follows (user ids, idempotency keys):
 * 1 to `maxLength` characters, none of them a control character.
 */
export function identifierSchema(maxLength: number) {
  return (
    z
      .string()
      .min(1, 'must not be empty')
      .max(maxLength, `must be at most ${maxLength} characters`)
      // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
      .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters')
  );
}
