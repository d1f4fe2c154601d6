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
 * Only a literal with 16 or more digits in a row or an exponent of three digits or more
 * can be either, so a body without one is passed after a single regular-expression test;
 * in one with, only such literals are looked at. Ingestion calls this only for a body whose
 * parsed payloads hold a zero, an integer past 2^53 or an infinity (checkPayload).
 */
const MAYBE_INEXACT = /\d{16}|[eE][+-]?0*[1-9]\d{2}/;

/** Whether a parsed number may differ from its literal: only zero (an underflow reads as 0),
 *  an integer past 2^53 or an infinity can; every other is exact, or the nearest double of a
 *  fraction. A payload holding none needs no look at its text. */
export function mayDifferFromItsLiteral(n: number): boolean {
  if (n === 0 || !Number.isFinite(n)) return true;
  return Number.isInteger(n) && !Number.isSafeInteger(n);
}

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
      let dotAt = -1;
      let exponentAt = -1;
      for (i++; i < n; i++) {
        const d = json.charCodeAt(i);
        if (d === 0x65 || d === 0x45) exponentAt = i;
        else if (d === 0x2e) dotAt = i;
        else if (!isNumberChar(d)) break;
      }
      if (mayChange(json, start, dotAt, exponentAt, i)) {
        const literal = json.slice(start, i);
        if (!arrivesAsSent(literal)) return literal;
      }
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

/**
 * Whether the number literal json[start, end) may arrive as another number: an integer of
 * 16 characters or more (a double holds every integer of up to 15 digits), or a literal
 * whose length before its exponent plus the exponent reaches 290 (near the ends of the
 * double's range, 1.8e308 and 5e-324). Any other is carried exactly, or as its nearest double.
 */
function mayChange(
  json: string,
  start: number,
  dotAt: number,
  exponentAt: number,
  end: number,
): boolean {
  const mantissa = (exponentAt < 0 ? end : exponentAt) - start;
  if (dotAt < 0 && exponentAt < 0) return mantissa >= 16;
  let exponent = 0;
  for (let k = exponentAt + 1; exponentAt >= 0 && k < end && exponent < 10_000; k++) {
    const d = json.charCodeAt(k);
    if (d >= 0x30 && d <= 0x39) exponent = exponent * 10 + (d - 0x30);
  }
  return mantissa + exponent >= 290;
}

/** A digit, '.', '+' or '-' (an exponent's 'e' is looked for apart). */
function isNumberChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2b || c === 0x2d;
}

function arrivesAsSent(literal: string): boolean {
  const value = Number(literal);
  if (!Number.isFinite(value)) return false;
  if (value === 0) return decimalOf(literal) === '0';
  // A fraction or an exponent: the nearest double is what was meant.
  if (!/^-?\d+$/.test(literal) || Number.isSafeInteger(value)) return true;
  return decimalOf(literal) === decimalOf(String(value));
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
