import { HttpError } from '../core/http.js';

/**
 * Payloads are parsed once, as JavaScript numbers (IEEE 754 doubles), and delivered as
 * those: `1.0` arrives as `1`, `1E2` as `100`, `0.10000000000000001` as `0.1`, the same
 * value. Some literals would arrive as another number, and those are refused instead:
 *
 * - an integer literal (no fraction, no exponent) that the double does not spell back the
 *   same: `12345678901234567890` would arrive as `12345678901234567000`, and a 64-bit id
 *   past 2^53 as its neighbour;
 * - a number out of the double's range: `1e400` would arrive as `null`, `1e-400` as `0`.
 *
 * Only a literal with 16 or more digits in a row or a three-digit exponent can be either,
 * so a body without one is passed after a single regular-expression test.
 */
const MAYBE_INEXACT = /\d{16}|[eE][+-]?\d{3}/;

/** The first number literal of a valid JSON text that would not arrive as it was sent. */
export function inexactNumber(json: string): string | undefined {
  if (!MAYBE_INEXACT.test(json)) return undefined;
  const n = json.length;
  let i = 0;
  while (i < n) {
    const c = json.charCodeAt(i);
    if (c === 0x22) {
      // a string: skipped to its closing quote, escapes and all
      i++;
      while (i < n) {
        const d = json.charCodeAt(i);
        if (d === 0x5c) i += 2;
        else {
          i++;
          if (d === 0x22) break;
        }
      }
      continue;
    }
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      i++;
      while (i < n && isNumberChar(json.charCodeAt(i))) i++;
      const literal = json.slice(start, i);
      if (!arrivesAsSent(literal)) return literal;
      continue;
    }
    i++;
  }
  return undefined;
}

/** Throws 400 inexact_number for a body with a number that would not arrive as sent. */
export function refuseInexactNumbers(json: string): void {
  const literal = inexactNumber(json);
  if (literal === undefined) return;
  const shown = literal.length > 40 ? `${literal.slice(0, 40)}…` : literal;
  throw new HttpError(
    400,
    'inexact_number',
    `the number ${shown} would reach clients as another value (numbers are carried as ` +
      'IEEE 754 doubles: integers beyond ±2^53 lose digits, numbers past ±1.8e308 or below ' +
      '5e-324 do not exist): send it as a string',
  );
}

function isNumberChar(c: number): boolean {
  // digits, '.', 'e', 'E', '+', '-'
  return (
    (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d
  );
}

function arrivesAsSent(literal: string): boolean {
  const value = Number(literal);
  if (!Number.isFinite(value)) return false;
  const sent = decimalOf(literal);
  if (value === 0) return sent === '0';
  if (/^-?\d+$/.test(literal)) return sent === decimalOf(String(value));
  return true;
}

/** A number literal as its significant digits and the power of ten of the last one:
 *  `120.50` → `1205e-1`, `1.2e+3` → `12e2`; any zero → `0`. */
function decimalOf(literal: string): string {
  const m = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal);
  if (!m) return literal;
  const fraction = m[2] ?? '';
  const digits = ((m[1] as string) + fraction).replace(/^0+/, '');
  if (digits === '') return '0';
  const kept = digits.replace(/0+$/, '');
  const exponent = Number(m[3] ?? 0) - fraction.length + (digits.length - kept.length);
  return `${kept}e${exponent}`;
}
