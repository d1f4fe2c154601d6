import { describe, expect, it } from 'vitest';
import { parseIngestBody } from '../../src/collect/ingest-schema.js';
import { HttpError } from '../../src/core/http.js';
import type { MessageLimits } from '../../src/collect/message-limits.js';

const LIMITS: MessageLimits = {
  maxPayloadBytes: 1000,
  maxPayloadDepth: 4,
  maxRequestPayloadBytes: 10_000,
};
// The text as a getter: a body nested a million deep has none (JSON.stringify overflows),
// and parseIngestBody reads it only for a payload with a doubtful number.
const parse = (body: unknown, limits = LIMITS) =>
  parseIngestBody(
    {
      value: body,
      get text() {
        return JSON.stringify(body);
      },
    },
    limits,
  );

function refusal(body: unknown): HttpError {
  try {
    parse(body);
  } catch (err) {
    if (err instanceof HttpError) return err;
    throw err;
  }
  throw new Error(`accepted ${JSON.stringify(body).slice(0, 100)}`);
}

/** `depth` arrays, one inside the other. */
const nested = (depth: number): unknown => JSON.parse('['.repeat(depth) + ']'.repeat(depth));

describe('ingest body', () => {
  it('makes one message per recipient, in request order, with the idempotency key', () => {
    expect(parse({ to: ['a', 'b'], payload: { x: 1 }, idempotencyKey: 'k' })).toEqual([
      { to: 'a', payload: { x: 1 }, payloadJson: '{"x":1}', idempotencyKey: 'k' },
      { to: 'b', payload: { x: 1 }, payloadJson: '{"x":1}', idempotencyKey: 'k' },
    ]);
    expect(
      parse({
        messages: [
          { to: 'a', payload: 1 },
          { to: ['b', 'c'], payload: null },
        ],
      }).map((m) => [m.to, m.payload]),
    ).toEqual([
      ['a', 1],
      ['b', null],
      ['c', null],
    ]);
  });

  it('takes user ids and idempotency keys in any script, pairs of surrogates (emoji) included', () => {
    for (const id of ['héllo', 'ユーザー', '🚀', '\ud83d\ude80x', 'a{b}c'])
      expect(parse({ to: id, payload: 1, idempotencyKey: id })[0]).toMatchObject({
        to: id,
        idempotencyKey: id,
      });
  });

  it('takes a user id of 256 characters and an idempotency key of 128, and refuses one more', () => {
    expect(
      parse({ to: 'u'.repeat(256), payload: 1, idempotencyKey: 'k'.repeat(128) }),
    ).toHaveLength(1);
    expect(refusal({ to: 'u'.repeat(257), payload: 1 }).message).toContain('to');
    expect(refusal({ to: 'u', payload: 1, idempotencyKey: 'k'.repeat(129) }).message).toContain(
      'idempotencyKey',
    );
  });

  it('accepts any JSON payload, null and false included', () => {
    for (const payload of [null, false, 0, '', [], 'héllo 🚀'])
      expect(parse({ to: 'a', payload })[0]?.payload).toEqual(payload);
  });

  it.each([
    ['no payload', { to: 'a' }, 'payload'],
    ['empty user id', { to: '', payload: 1 }, 'to'],
    ['no recipients', { to: [], payload: 1 }, 'to'],
    ['control characters in a user id', { to: 'a\nb', payload: 1 }, 'to'],
    ['a lone surrogate in a user id', { to: 'a\ud800', payload: 1 }, 'to'],
    ['a lone low surrogate in a user id', { to: '\udc00b', payload: 1 }, 'to'],
    [
      'a lone surrogate in an idempotency key',
      { to: 'a', payload: 1, idempotencyKey: '\udbff' },
      'idempotencyKey',
    ],
    ['an unknown field', { to: 'a', payload: 1, priority: 9 }, 'priority'],
    ['an empty batch', { messages: [] }, 'messages'],
    ['an array body', [1], 'body'],
  ])('refuses %s with a 400 that names the field', (_name, body, field) => {
    try {
      parse(body);
      expect.unreachable('accepted an invalid body');
    } catch (err) {
      expect(err).toBeInstanceOf(HttpError);
      expect((err as HttpError).status).toBe(400);
      expect((err as HttpError).message).toContain(field);
    }
  });

  it('takes a payload exactly at each limit, and refuses it one past, naming the limit', () => {
    // {"s":"…"} is 8 bytes of JSON around the string.
    expect(parse({ to: 'a', payload: { s: 'x'.repeat(992) } })).toHaveLength(1);
    const big = refusal({ to: 'a', payload: { s: 'x'.repeat(993) } });
    expect([big.status, big.code]).toEqual([400, 'limit_exceeded']);
    expect(big.message).toContain('MAX_PAYLOAD_BYTES (1000)');
    expect(big.message).toContain('1001 bytes');

    expect(parse({ to: 'a', payload: nested(4) })).toHaveLength(1);
    const deep = refusal({
      messages: [
        { to: 'a', payload: 1 },
        { to: 'b', payload: nested(5) },
      ],
    });
    expect([deep.status, deep.code]).toEqual([400, 'limit_exceeded']);
    expect(deep.message).toContain('messages.1.payload');
    expect(deep.message).toContain('MAX_PAYLOAD_DEPTH (4)');
  });

  it('measures bytes as UTF-8, not as characters', () => {
    // "é" is 2 bytes: 2 quotes + 499 × 2 = 1000 bytes; one more is 1002.
    expect(parse({ to: 'a', payload: 'é'.repeat(499) })).toHaveLength(1);
    expect(refusal({ to: 'a', payload: 'é'.repeat(500) }).code).toBe('limit_exceeded');
  });

  it('checks nesting of any depth without overflowing the stack', () => {
    const err = refusal({ to: 'a', payload: nested(200_000) });
    expect(err.code).toBe('limit_exceeded');
  });

  it('refuses object keys with NUL anywhere in the payload, and takes $ and . in keys', () => {
    const err = refusal({ to: 'a', payload: { ok: { ['a\u0000b']: 1 } } });
    expect([err.status, err.code]).toEqual([400, 'invalid_request']);
    expect(err.message).toContain('NUL');
    expect(parse({ to: 'a', payload: { $set: { 'a.b': 1 } } })[0]?.payload).toEqual({
      $set: { 'a.b': 1 },
    });
  });

  it('bounds what one request stores in all: payload × recipients', () => {
    const payload = 'x'.repeat(998); // 1000 bytes as JSON
    expect(parse({ to: Array.from({ length: 10 }, (_, i) => `u${i}`), payload })).toHaveLength(10);
    const err = refusal({ to: Array.from({ length: 11 }, (_, i) => `u${i}`), payload });
    expect(err.code).toBe('limit_exceeded');
    expect(err.message).toContain('MAX_REQUEST_PAYLOAD_BYTES (10000)');
  });

  it('refuses control characters in an idempotency key', () => {
    expect(refusal({ to: 'a', payload: 1, idempotencyKey: 'k\u0000' }).message).toContain(
      'idempotencyKey',
    );
  });

  it('tells a sender still using `id` for the idempotency key what it is called now', () => {
    for (const body of [
      { to: 'a', payload: 1, id: 'k' },
      {
        messages: [
          { to: 'a', payload: 1 },
          { to: 'b', payload: 1, id: 'k' },
        ],
      },
    ]) {
      const err = refusal(body);
      expect([err.status, err.code]).toEqual([400, 'invalid_request']);
      expect(err.message).toContain('idempotencyKey');
    }
    expect(
      refusal({
        messages: [
          { to: 'a', payload: 1 },
          { to: 'b', payload: 1, id: 'k' },
        ],
      }).message,
    ).toContain('messages.1.id');
  });

  it('reads the text of a payload whose numbers may not be their literals, and only then', () => {
    const fromText = (text: string) =>
      parseIngestBody({ value: JSON.parse(text) as unknown, text }, LIMITS);
    for (const literal of ['9007199254740993', '1e400', '1e-400']) {
      let err: unknown;
      try {
        fromText(`{"messages":[{"to":"u","payload":1},{"to":"u","payload":{"n":[0,${literal}]}}]}`);
      } catch (e) {
        err = e;
      }
      expect((err as HttpError).code, literal).toBe('inexact_number');
    }
    expect(
      fromText('{"to":"u","payload":{"zero":0,"max":9007199254740991,"f":-0.5e-300}}'),
    ).toHaveLength(1);
    // A value that gives no cause is passed without its text: a text that says otherwise is
    // not read (what parseIngestBody is given always matches, as readJsonText returns both).
    expect(
      parseIngestBody(
        { value: { to: 'u', payload: 1 }, text: '{"to":"u","payload":1e400}' },
        LIMITS,
      ),
    ).toHaveLength(1);
  });
});
