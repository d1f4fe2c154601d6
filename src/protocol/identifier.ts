import { z } from 'zod';

/**
 * The text rule every identifier a caller picks follows (user ids, idempotency keys):
 * 1 to `maxLength` characters, none of them a control character, and well-formed Unicode.
 *
 * A lone surrogate (half of a UTF-16 pair, "\ud800" in JSON) has no UTF-8 form: ioredis and
 * MongoDB's BSON write U+FFFD in its place, so "\ud800x" and "\udbffx" would be one user
 * there: one route key in Redis (each one's node forwarded the other's messages), and on the
 * MongoDB store one recipient, whose replay would hand each the other's messages. Such ids
 * are refused where they enter.
 */
export function identifierSchema(maxLength: number) {
  return (
    z
      .string()
      .min(1, 'must not be empty')
      .max(maxLength, `must be at most ${maxLength} characters`)
      // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
      .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters')
      // With the u flag a surrogate only matches when it is not half of a pair.
      .refine(
        (s) => !/[\ud800-\udfff]/u.test(s),
        'must be well-formed Unicode (it holds a lone surrogate)',
      )
  );
}
