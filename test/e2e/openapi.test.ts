import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken, postMessages } from '../support/clients.js';

// docs/openapi.yaml checked against the running services: every answer below must be
// a status the document lists for that operation, with a body its schema accepts.
interface Doc {
  paths: Record<
    string,
    Record<
      string,
      { responses: Record<string, { $ref?: string; content?: Record<string, unknown> }> }
    >
  >;
  components: { responses: Record<string, { content?: Record<string, unknown> }> };
}
const doc = parse(readFileSync(join(PROJECT_ROOT, 'docs/openapi.yaml'), 'utf8')) as Doc;
const ajv = new Ajv2020({ strict: false, allErrors: true });
(addFormats as unknown as (a: Ajv2020) => void)(ajv);
ajv.addSchema({ ...doc, $id: 'openapi' });

const pointer = (...parts: string[]): string =>
  parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

function responseSchemaRef(path: string, method: string, status: string): string | undefined {
  const response = doc.paths[path]?.[method]?.responses[status];
  if (!response) return undefined;
  if (response.$ref) {
    const name = response.$ref.split('/').pop() as string;
    return `openapi#/${pointer('components', 'responses', name, 'content', 'application/json', 'schema')}`;
  }
  const type = Object.keys(response.content ?? {})[0] ?? 'application/json';
  return `openapi#/${pointer('paths', path, method, 'responses', status, 'content', type, 'schema')}`;
}

let cluster: TestCluster;
const exercised = new Set<string>();

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 1 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

async function check(
  service: 'auth' | 'collect' | 'dispatch',
  method: string,
  path: string,
  docPath: string,
  init: RequestInit = {},
) {
  const res = await fetch(`${cluster[service].url}${path}`, {
    method: method.toUpperCase(),
    ...init,
  });
  const status = String(res.status);
  const ref = responseSchemaRef(docPath, method, status);
  expect(
    ref,
    `${method.toUpperCase()} ${docPath} answered ${status}, which the document does not list`,
  ).toBeDefined();
  const text = await res.text();
  const validate = ajv.getSchema(ref as string);
  expect(validate, `schema ${ref}`).toBeDefined();
  const body = res.headers.get('content-type')?.includes('json')
    ? (JSON.parse(text) as unknown)
    : text;
  const ok = validate?.(body);
  expect(
    ok,
    `${method.toUpperCase()} ${path} → ${status}: ${JSON.stringify(validate?.errors)} for ${text.slice(0, 300)}`,
  ).toBe(true);
  exercised.add(`${method} ${docPath}`);
  return { status: res.status, body };
}

const json = (body: unknown, key?: string): RequestInit => ({
  headers: {
    'content-type': 'application/json',
    ...(key ? { authorization: `Bearer ${key}` } : {}),
  },
  body: typeof body === 'string' ? body : JSON.stringify(body),
});

describe('docs/openapi.yaml matches the running services', () => {
  it('auth: /v1/token-key', async () => {
    const answer = await check('auth', 'post', '/v1/token-key', '/v1/token-key', json({}));
    expect(answer.status).toBe(200);
    expect(
      (await check('auth', 'post', '/v1/token-key', '/v1/token-key', json('{nope'))).status,
    ).toBe(400);
  });

  it('auth: /v1/tokens and /v1/verify', async () => {
    expect(
      (
        await check(
          'auth',
          'post',
          '/v1/tokens',
          '/v1/tokens',
          json({ userId: 'oa', ttlSeconds: 60 }, KEYS.AUTH_ADMIN_KEY),
        )
      ).status,
    ).toBe(201);
    expect(
      (await check('auth', 'post', '/v1/tokens', '/v1/tokens', json({ userId: 'oa' }, 'wrong')))
        .status,
    ).toBe(401);
    expect(
      (
        await check(
          'auth',
          'post',
          '/v1/tokens',
          '/v1/tokens',
          json({ userId: '' }, KEYS.AUTH_ADMIN_KEY),
        )
      ).status,
    ).toBe(400);
    const token = await mintToken(cluster, 'oa');
    expect((await check('auth', 'post', '/v1/verify', '/v1/verify', json({ token }))).status).toBe(
      200,
    );
    expect(
      (await check('auth', 'post', '/v1/verify', '/v1/verify', json({ token: 'forged' }))).status,
    ).toBe(401);
    expect((await check('auth', 'post', '/v1/verify', '/v1/verify', json('{nope'))).status).toBe(
      400,
    );
  });

  it('collect: /v1/messages and /v1/messages/{id}', async () => {
    const key = KEYS.INGEST_API_KEY;
    const posts: [unknown, string | undefined, number][] = [
      [{ to: ['a', 'b'], payload: { x: 1 } }, key, 202],
      [{ messages: [{ to: 'a', payload: 1, idempotencyKey: 'k1' }] }, key, 202],
      [{ messages: [{ to: 'a', payload: 2, idempotencyKey: 'k1' }] }, key, 422],
      [{ to: 'a' }, key, 400],
      [{ to: 'a', payload: 1 }, undefined, 401],
      [{ to: 'a', payload: 'x'.repeat(1024 * 1024 + 1) }, key, 413],
    ];
    for (const [body, bearer, status] of posts) {
      const answer = await check(
        'collect',
        'post',
        '/v1/messages',
        '/v1/messages',
        json(body, bearer),
      );
      expect(answer.status).toBe(status);
    }
    const [id] = await postMessages(cluster, { to: 'oa', payload: 'status' });
    const auth = { headers: { authorization: `Bearer ${key}` } };
    expect(
      (await check('collect', 'get', `/v1/messages/${id}`, '/v1/messages/{id}', auth)).status,
    ).toBe(200);
    expect(
      (await check('collect', 'get', '/v1/messages/unknown', '/v1/messages/{id}', auth)).status,
    ).toBe(404);
    expect((await check('collect', 'get', `/v1/messages/${id}`, '/v1/messages/{id}')).status).toBe(
      401,
    );
  });

  it('dispatch: /v1/connect, and /health and /metrics everywhere', async () => {
    expect((await check('dispatch', 'get', '/v1/connect', '/v1/connect')).status).toBe(200);
    for (const service of ['auth', 'collect', 'dispatch'] as const) {
      expect((await check(service, 'get', '/health', '/health')).status).toBe(200);
      expect((await check(service, 'get', '/metrics', '/metrics')).status).toBe(200);
    }
  });

  it('documents no operation that was not exercised above', () => {
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m} ${path}`),
    );
    expect(documented.filter((op) => !exercised.has(op))).toEqual([]);
  });
});
