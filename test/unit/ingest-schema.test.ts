import { describe, expect, it } from 'vitest';
import { parseIngestBody } from '../../src/collect/ingest-schema.js';
import { HttpError } from '../../src/core/http.js';

const parse = (body: unknown) => parseIngestBody(body);

describe('ingest body', () => {
  it('makes one message per recipient, in request order, with the idempotency key', () => {
    expect(parse({ to: ['a', 'b'], payload: { x: 1 }, id: 'k' })).toEqual([
      { to: 'a', payload: { x: 1 }, key: 'k' },
      { to: 'b', payload: { x: 1 }, key: 'k' },
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

  it('accepts any JSON payload, null and false included', () => {
    for (const payload of [null, false, 0, '', [], 'héllo 🚀'])
      expect(parse({ to: 'a', payload })[0]?.payload).toEqual(payload);
  });

  it.each([
    ['no payload', { to: 'a' }, 'payload'],
    ['empty user id', { to: '', payload: 1 }, 'to'],
    ['no recipients', { to: [], payload: 1 }, 'to'],
    ['control characters in a user id', { to: 'a\nb', payload: 1 }, 'to'],
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
});
