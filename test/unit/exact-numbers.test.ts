import { describe, expect, it } from 'vitest';
import { inexactNumber, refuseInexactNumbers } from '../../src/collect/exact-numbers.js';
import { HttpError } from '../../src/core/http.js';

const body = (payload: string): string => `{"to":"u","payload":${payload}}`;

describe('numbers that would not arrive as sent', () => {
  it.each([
    ['12345678901234567890', 'an integer past 2^53 that loses digits'],
    ['9007199254740993', '2^53 + 1, which becomes 2^53'],
    ['-9007199254740993', 'its negative'],
    ['18446744073709551616', '2^64: exact as a double, but spelt back 18446744073709552000'],
    ['1e400', 'past the double range (would be null)'],
    ['-1.5E+309', 'past it, negative'],
    ['1e-400', 'below the smallest double (would be 0)'],
    ['0.' + '0'.repeat(400) + '1', 'the same without an exponent'],
    ['1' + '0'.repeat(400), 'a 401-digit integer'],
    ['1' + '0'.repeat(310) + '.5', 'past the double range, with a fraction'],
    ['12345.5e305', 'past it by its digits and exponent together'],
  ])('refuses %s: %s', (literal) => {
    expect(inexactNumber(body(`{"a":[1,${literal}]}`))).toBe(literal);
    let err: unknown;
    try {
      refuseInexactNumbers(body(literal));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HttpError);
    expect((err as HttpError).status).toBe(400);
    expect((err as HttpError).code).toBe('inexact_number');
  });

  it.each([
    ['9007199254740992', '2^53'],
    ['-9007199254740991', 'the most negative safe integer'],
    ['100000000000000000000000', '1e23 spelt out: the same number back'],
    ['0.10000000000000001', 'a double printed with 17 digits: the same double as 0.1'],
    ['3.141592653589793238462643', 'more digits than a double holds: its nearest double'],
    ['1.7976931348623157e308', 'the largest double'],
    ['5e-324', 'the smallest'],
    ['0.000000000000000000000', 'zero with many digits'],
    ['-0', 'negative zero'],
    ['1.0', 'a plain number'],
    ['1E2', 'an exponent'],
    ['1.5e-300', 'small, within the range'],
    ['1' + '0'.repeat(300) + '.5', 'large, within the range'],
  ])('passes %s: %s', (literal) => {
    expect(inexactNumber(body(literal))).toBeUndefined();
  });

  it('looks only at numbers, not at digits inside strings, escapes and all', () => {
    expect(
      inexactNumber(
        body('{"id":"12345678901234567890","e":"1e400","q":"\\"12345678901234567890"}'),
      ),
    ).toBeUndefined();
    expect(inexactNumber(body('{"s":"\\\\","n":12345678901234567890}'))).toBe(
      '12345678901234567890',
    );
  });
});
