import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ingest, type IngestOptions } from '../../src/collect/ingest.js';
import { HttpError } from '../../src/core/http.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';

let store: SqliteStore;
let storeFailures: number;

const options = (): IngestOptions => ({
  store,
  newId: monotonicFactory(),
  ttlMs: 60_000,
  handoffGraceMs: 5000,
  onStoreFailed: () => storeFailures++,
});

beforeEach(() => {
  store = SqliteStore.open({ path: ':memory:', purgeIntervalMs: 0 });
  storeFailures = 0;
});
afterEach(async () => {
  await store.close().catch(() => undefined);
});

describe('ingest', () => {
  it('stores one pending message per recipient, due after the hand-off grace, in order', async () => {
    const now = new Date();
    const res = await ingest(
      [
        { to: 'a', payload: 1, payloadJson: '1' },
        { to: 'b', payload: { x: [1] }, payloadJson: '{"x":[1]}', idempotencyKey: 'k' },
      ],
      now,
      options(),
    );
    expect(res.ids).toHaveLength(2);
    const [a, b] = await Promise.all(res.ids.map((id) => store.get(id)));
    expect([a?.to, a?.status, a?.payload]).toEqual(['a', 'pending', 1]);
    expect([b?.to, b?.idempotencyKey, b?.payload]).toEqual(['b', 'k', { x: [1] }]);
    expect(a?.nextAttemptAt?.getTime()).toBe(now.getTime() + 5000);
    expect(a?.expiresAt.getTime()).toBe(now.getTime() + 60_000);
  });

  it('returns the stored id for a repeated idempotency key, and hands off only new messages', async () => {
    const first = await ingest(
      [{ to: 'a', payload: 1, payloadJson: '1', idempotencyKey: 'order-1' }],
      new Date(),
      options(),
    );
    const again = await ingest(
      [{ to: 'a', payload: 1, payloadJson: '1', idempotencyKey: 'order-1' }],
      new Date(),
      options(),
    );
    expect(again.ids).toEqual(first.ids);
    expect(again.inserted).toEqual([]);
  });

  it('answers 422 idempotency_conflict, naming the stored message, for a repeated key with another payload', async () => {
    const first = await ingest(
      [{ to: 'a', payload: 1, payloadJson: '1', idempotencyKey: 'order-2' }],
      new Date(),
      options(),
    );
    const err = await ingest(
      [{ to: 'a', payload: 2, payloadJson: '2', idempotencyKey: 'order-2' }],
      new Date(),
      options(),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect([(err as HttpError).status, (err as HttpError).code]).toEqual([
      422,
      'idempotency_conflict',
    ]);
    expect((err as HttpError).message).toContain(first.ids[0]);
    expect((err as HttpError).message).toContain('idempotencyKey "order-2" for user "a"');
    expect((await store.listUnacked('a', 10)).map((m) => m.payload)).toEqual([1]);
  });

  it('answers 422 for a request that repeats a key for one user with two payloads, naming no message, and stores nothing', async () => {
    const err = await ingest(
      [
        { to: 'c', payload: 0, payloadJson: '0' },
        { to: 'c', payload: 1, payloadJson: '1', idempotencyKey: 'order-3' },
        { to: 'd', payload: 2, payloadJson: '2', idempotencyKey: 'order-3' },
        { to: 'c', payload: 2, payloadJson: '2', idempotencyKey: 'order-3' },
      ],
      new Date(),
      options(),
    ).catch((e) => e);
    expect([(err as HttpError).status, (err as HttpError).code]).toEqual([
      422,
      'idempotency_conflict',
    ]);
    expect((err as HttpError).message).toContain(
      'idempotencyKey "order-3" for user "c" comes twice in this request',
    );
    expect((err as HttpError).message).not.toMatch(/message [0-9A-Z]{26}/);
    expect(await store.listUnacked('c', 10)).toEqual([]);
    expect(await store.listUnacked('d', 10)).toEqual([]);
  });

  it('answers 503, counted, when the store cannot write', async () => {
    await store.close();
    const err = await ingest(
      [{ to: 'a', payload: 1, payloadJson: '1' }],
      new Date(),
      options(),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect([(err as HttpError).status, (err as HttpError).code]).toEqual([
      503,
      'store_unavailable',
    ]);
    expect(storeFailures).toBe(1);
  });
});
