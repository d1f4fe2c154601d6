import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDemoServer } from '../../src/demo/demo-server.js';
import { freePort } from '../../src/launcher/child.js';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { rawRequest } from '../support/raw-http.js';

// The demo server `npm start` runs on loopback, for the browser of the developer who runs
// it: other sites that browser visits must not mint tokens or send messages through it.
let cluster: TestCluster;
let demo: Server;

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 1 });
  demo = await listening(
    createDemoServer({
      authUrl: cluster.auth.url,
      collectUrl: cluster.collect.url,
      dispatchUrl: cluster.dispatch.url,
      adminKey: KEYS.AUTH_ADMIN_KEY,
      ingestKey: KEYS.INGEST_API_KEY,
    }),
  );
}, 60_000);

afterAll(async () => {
  demo?.close();
  await cluster?.stop();
}, 60_000);

async function listening(server: Server): Promise<Server> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

type Answer = { status: number; body: { error?: { code: string; message: string } } & object };

/** One request with exactly these headers (Host included) and body bytes; `splitBodyAt`:
 *  the body is written in two parts. The status and the parsed JSON body. */
async function raw(
  port: number,
  method: 'GET' | 'POST',
  target: string,
  headers: Record<string, string>,
  body: Buffer = Buffer.alloc(0),
  splitBodyAt?: number,
): Promise<Answer> {
  const answer = await rawRequest(port, {
    method,
    target,
    headers: Object.entries(headers),
    body,
    splitBodyAt,
  });
  return { status: answer.status, body: JSON.parse(answer.body) as Answer['body'] };
}

const port = (): number => (demo.address() as AddressInfo).port;
const send = (to: string, payload: unknown): Buffer => Buffer.from(JSON.stringify({ to, payload }));

async function storedPayload(id: string): Promise<unknown> {
  const res = await fetch(`${cluster.collect.url}/v1/messages/${id}`, {
    headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
  });
  return ((await res.json()) as { payload: unknown }).payload;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const own = (): Record<string, string> => ({ host: `127.0.0.1:${port()}` });

describe('the demo server', () => {
  it('sends for a tool that names it, as curl does (no Origin)', async () => {
    const res = await raw(
      port(),
      'POST',
      '/send',
      { ...own(), ...JSON_TYPE },
      send('demo-curl', 'hi'),
    );
    expect(res.status).toBe(202);
    const [id] = (res.body as { ids: string[] }).ids;
    expect(await storedPayload(id as string)).toBe('hi');
  });

  it('refuses a Host that is not its own (DNS rebinding), for the page and for a token', async () => {
    const cases: ['GET' | 'POST', string, string][] = [
      ['GET', '/', 'evil.example'],
      ['GET', '/', `evil.example:${port()}`],
      ['GET', '/connect', `127.0.0.1:${port() + 1}`],
      ['POST', '/token', `rebind.evil.example:${port()}`],
    ];
    for (const [method, path, host] of cases) {
      const body = Buffer.from(JSON.stringify({ userId: 'victim' }));
      const res = await raw(port(), method, path, { host, ...JSON_TYPE }, body);
      expect(res.status, `${method} ${path} Host ${host}`).toBe(403);
      expect(res.body.error?.code).toBe('forbidden_host');
    }
    for (const host of ['localhost', '127.0.0.1', 'LOCALHOST']) {
      const res = await raw(port(), 'GET', '/connect', { host: `${host}:${port()}` });
      expect(res.status, host).toBe(200);
    }
  });

  it("refuses a POST another site's page makes, before any key is used", async () => {
    const other = `http://127.0.0.1:${port() + 1}`;
    const cases: [Record<string, string>, number, string][] = [
      // What a form or a no-cors fetch of another site sends.
      [{ origin: 'http://evil.example', 'content-type': 'text/plain' }, 403, 'cross_origin'],
      [{ origin: 'http://evil.example', ...JSON_TYPE }, 403, 'cross_origin'],
      [{ origin: other, ...JSON_TYPE }, 403, 'cross_origin'],
      [{ 'sec-fetch-site': 'cross-site', ...JSON_TYPE }, 403, 'cross_origin'],
      [{ 'sec-fetch-site': 'same-site', ...JSON_TYPE }, 403, 'cross_origin'],
      // Not labelled JSON: a form, even one of the page's own origin.
      [
        { origin: `http://127.0.0.1:${port()}`, 'content-type': 'text/plain' },
        415,
        'unsupported_media_type',
      ],
      [{ 'content-type': 'application/x-www-form-urlencoded' }, 415, 'unsupported_media_type'],
    ];
    for (const [headers, status, code] of cases) {
      for (const path of ['/send', '/token']) {
        const body =
          path === '/send'
            ? send('demo-victim', 'forged')
            : Buffer.from('{"userId":"demo-victim"}');
        const res = await raw(port(), 'POST', path, { ...own(), ...headers }, body);
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(status);
        expect(res.body.error?.code).toBe(code);
      }
    }
    // The page's own fetch passes.
    const page = await raw(
      port(),
      'POST',
      '/token',
      {
        ...own(),
        origin: `http://127.0.0.1:${port()}`,
        'sec-fetch-site': 'same-origin',
        'content-type': 'application/json; charset=utf-8',
      },
      Buffer.from('{"userId":"demo-page-user"}'),
    );
    expect(page.status).toBe(201);
  });

  it('answers a body over 64 KiB with 413, and passes one of 64 KiB on', async () => {
    const exactly = (bytes: number): Buffer => {
      const shell = send('demo-big', '').length;
      return send('demo-big', 'x'.repeat(bytes - shell));
    };
    expect(exactly(64 * 1024).length).toBe(64 * 1024);
    const headers = { ...own(), ...JSON_TYPE };
    const over = await raw(port(), 'POST', '/send', headers, exactly(64 * 1024 + 1));
    expect(over.status).toBe(413);
    expect(over.body.error?.code).toBe('payload_too_large');
    const at = await raw(port(), 'POST', '/send', headers, exactly(64 * 1024));
    expect(at.status).toBe(202);
  });

  it('keeps a character whose bytes arrive in two reads whole, and passes bytes that are not UTF-8 on to be refused', async () => {
    const body = send('demo-utf8', 'prix: 5 €, café');
    // The pause falls inside the euro sign's three bytes.
    const inside = body.indexOf(Buffer.from('€')) + 1;
    const res = await raw(port(), 'POST', '/send', { ...own(), ...JSON_TYPE }, body, inside);
    expect(res.status).toBe(202);
    const [id] = (res.body as { ids: string[] }).ids;
    expect(await storedPayload(id as string)).toBe('prix: 5 €, café');
    // Bytes that are not UTF-8 are passed on as they came, and collect refuses them: they
    // are not stored as U+FFFD.
    const broken = Buffer.concat([body.subarray(0, inside), body.subarray(inside + 1)]);
    const refused = await raw(port(), 'POST', '/send', { ...own(), ...JSON_TYPE }, broken);
    expect(refused.status).toBe(400);
    expect(refused.body.error?.code).toBe('invalid_body');
  });

  it('answers a target it cannot parse with 404, not 500', async () => {
    for (const path of ['//a:b', '//[::', '/js/../../package.json', '/send/']) {
      const res = await raw(port(), 'GET', path, own());
      expect(res.status, path).toBe(404);
      expect(res.body.error?.code).toBe('not_found');
    }
  });

  it('answers 502 with a JSON error, not 500, when the cluster does not answer', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const orphan = await listening(
      createDemoServer({
        authUrl: closed,
        collectUrl: closed,
        dispatchUrl: closed,
        adminKey: 'a',
        ingestKey: 'i',
      }),
    );
    try {
      const p = (orphan.address() as AddressInfo).port;
      const headers = { host: `127.0.0.1:${p}`, ...JSON_TYPE };
      const res = await raw(p, 'POST', '/send', headers, send('nobody', 1));
      expect(res.status).toBe(502);
      expect(res.body.error?.code).toBe('upstream_unavailable');
      expect(res.body.error?.message).toContain(closed);
    } finally {
      orphan.close();
    }
  });
});
