import { HttpError } from '../core/http.js';
import { mayDifferFromItsLiteral } from './exact-numbers.js';

/** The limits every message is checked against at ingestion, before the store sees it.
 *  Each is named after its setting, so a refusal tells the sender what to change. */
export interface MessageLimits {
  /** MAX_PAYLOAD_BYTES: a payload's size as compact JSON, in UTF-8 bytes. */
  maxPayloadBytes: number;
  /** MAX_PAYLOAD_DEPTH: how deeply arrays and objects may nest in a payload. */
  maxPayloadDepth: number;
  /** MAX_REQUEST_PAYLOAD_BYTES: payload bytes one request may store in all (payload ×
   *  recipients, summed over its messages), so a small body cannot fan out without end. */
  maxRequestPayloadBytes: number;
}

/** What the check learnt of a payload. */
export interface PayloadFacts {
  /** The payload as compact JSON. */
  json: string;
  bytes: number;
  /** It holds a number that may not be the one its text said (exact-numbers.ts): zero (an
   *  underflow reads as 0), an integer past 2^53, or one out of range. */
  doubtfulNumbers: boolean;
}

/**
 * Checks one payload: nesting depth and object keys first (iteratively: a payload nested
 * a million deep must not overflow the stack), then its size as JSON. Throws a 400 that
 * names where the payload is (`where`) and the limit it breaks.
 */
export function checkPayload(payload: unknown, limits: MessageLimits, where: string): PayloadFacts {
  const stack: { value: unknown; depth: number }[] = [{ value: payload, depth: 0 }];
  let doubtfulNumbers = false;
  while (stack.length > 0) {
    const { value, depth } = stack.pop() as { value: unknown; depth: number };
    if (typeof value === 'number') {
      doubtfulNumbers ||= mayDifferFromItsLiteral(value);
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth + 1 > limits.maxPayloadDepth)
      throw new HttpError(
        400,
        'limit_exceeded',
        `${where} nests deeper than MAX_PAYLOAD_DEPTH (${limits.maxPayloadDepth})`,
      );
    if (Array.isArray(value)) {
      for (const item of value) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    for (const [key, item] of Object.entries(value)) {
      if (key.includes('\u0000'))
        throw new HttpError(
          400,
          'invalid_request',
          `${where} has an object key with a NUL character (\\u0000): keys may not contain it`,
        );
      stack.push({ value: item, depth: depth + 1 });
    }
  }
  const json = JSON.stringify(payload);
  const bytes = Buffer.byteLength(json);
  if (bytes > limits.maxPayloadBytes)
    throw new HttpError(
      400,
      'limit_exceeded',
      `${where} is ${bytes} bytes as JSON, more than MAX_PAYLOAD_BYTES (${limits.maxPayloadBytes})`,
    );
  return { json, bytes, doubtfulNumbers };
}
