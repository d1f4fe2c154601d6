import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import WebSocket, { WebSocketServer } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { waitFor } from '../../src/launcher/child.js';
import { PONG_FRAME, type ClientFrame } from '../../src/protocol/frames.js';

// The compiled client library in a real browser (its WebSocket shows no protocol pings and
// has no terminate()), against a stand-in node on loopback: the heartbeat, the connect
// timeout and acks after listeners, as a page uses them.
const CHROMIUM = [process.env.CHROMIUM_BIN, '/usr/bin/chromium'].find(
  (p): p is string => !!p && existsSync(p),
);
const CLIENT_JS = join(PROJECT_ROOT, 'dist', 'client', 'push-client.js');
if (!CHROMIUM)
  console.warn(
    'client browser test skipped: no chromium (scripts/provision-browser.sh installs it on Debian; or set CHROMIUM_BIN)',
  );

interface Stand {
  server: Server;
  port: number;
  sockets: WebSocket[];
  acks: string[];
  pings: number;
  answerPings: boolean;
  /** The /v1/connect answer: this node's /ws unless set. */
  connectTo: string | undefined;
  held: ServerResponse[];
}

let browser: Browser;
let stand: Stand;
let page: Page;

const PAGE = `<!doctype html><meta charset="utf-8"><title>client</title><script type="module">
import { PushClient } from '/js/client/push-client.js';
window.events = [];
window.start = (options, failFirst) => {
  let failed = false;
  const client = new PushClient({ connectUrl: '/v1/connect', getToken: () => 't', ...options });
  client.on('state', (s) => window.events.push('state:' + s));
  client.on('error', (e) => window.events.push('error:' + e.message));
  client.on('message', async (m) => {
    if (failFirst && !failed) { failed = true; throw new Error('listener broke'); }
    window.events.push('message:' + m.id);
  });
  client.start();
  window.client = client;
};
</script>`;

beforeAll(async () => {
  if (!CHROMIUM) return;
  if (!existsSync(CLIENT_JS)) throw new Error(`${CLIENT_JS} missing: run npm run build first`);
  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    if (path === '/') return res.setHeader('content-type', 'text/html').end(PAGE);
    if (path.startsWith('/js/') && !path.includes('..')) {
      const file = join(PROJECT_ROOT, 'dist', path.slice('/js/'.length));
      if (!existsSync(file)) return res.writeHead(404).end();
      return res.setHeader('content-type', 'text/javascript').end(readFileSync(file));
    }
    if (path === '/v1/connect') {
      if (stand.connectTo === 'hold') return void stand.held.push(res);
      const url = stand.connectTo ?? `ws://127.0.0.1:${stand.port}/ws`;
      return res.setHeader('content-type', 'application/json').end(JSON.stringify({ url }));
    }
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => {
    stand.sockets.push(ws);
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as ClientFrame;
      if (f.type === 'ack') stand.acks.push(f.id);
      else if (f.type === 'ping') {
        stand.pings++;
        if (stand.answerPings) ws.send(PONG_FRAME);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stand = {
    ...{ server, port: (server.address() as AddressInfo).port, sockets: [], acks: [] },
    ...{ pings: 0, answerPings: true, connectTo: undefined, held: [] },
  };
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
}, 60_000);

afterEach(async () => {
  await page?.close();
  if (!stand) return;
  for (const ws of stand.sockets.splice(0)) ws.terminate();
  for (const res of stand.held.splice(0)) res.destroy();
  Object.assign(stand, { acks: [], pings: 0, answerPings: true, connectTo: undefined });
});

afterAll(async () => {
  await browser?.close();
  stand?.server.closeAllConnections();
  await new Promise((r) => (stand ? stand.server.close(r) : r(undefined)));
});

async function openPage(options: Record<string, unknown>, failFirst = false): Promise<void> {
  page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${stand.port}/`);
  await page.waitForFunction(() => typeof (globalThis as { start?: unknown }).start === 'function');
  await page.evaluate(
    ([o, f]) => (globalThis as unknown as { start: (o: unknown, f: boolean) => void }).start(o, f),
    [options, failFirst] as const,
  );
}
const events = (): Promise<string[]> =>
  page.evaluate(() => (globalThis as unknown as { events: string[] }).events);
const frame = (id: string): string =>
  JSON.stringify({ type: 'message', id, payload: id, createdAt: new Date().toISOString() });

describe.skipIf(!CHROMIUM)('PushClient in a real browser', () => {
  it('heartbeats, and replaces a connection that went silent within about two intervals', async () => {
    await openPage({ heartbeatIntervalMs: 200 });
    await waitFor('three answered pings', () => stand.pings >= 3, 5000, 10);
    expect(stand.sockets).toHaveLength(1);
    stand.answerPings = false; // a hung node: the TCP connection stays, nothing comes back
    const silentFrom = performance.now();
    await waitFor('a second socket', () => stand.sockets.length === 2, 5000, 5);
    expect(performance.now() - silentFrom).toBeLessThan(2 * 200 + 600);
    expect(await events()).toContain(
      `error:no frame from ws://127.0.0.1:${stand.port}/ws within 200 ms of a ping: reconnecting`,
    );
    stand.answerPings = true;
    await expect.poll(async () => (await events()).at(-1), { timeout: 5000 }).toBe('state:open');
  });

  it('abandons a /v1/connect request that does not answer and connects on the next', async () => {
    stand.connectTo = 'hold';
    await openPage({ connectTimeoutMs: 300 });
    await waitFor('the held request', () => stand.held.length === 1);
    stand.connectTo = undefined;
    await waitFor('the client to connect', () => stand.sockets.length === 1, 5000);
    expect(await events()).toContain('error:connect endpoint did not answer within 300 ms');
  });

  it('acks a message once its async listener succeeded, and processes the redelivery of one that threw', async () => {
    await openPage({}, true);
    await waitFor('the client to connect', () => stand.sockets.length === 1);
    await expect.poll(async () => (await events()).at(-1), { timeout: 5000 }).toBe('state:open');
    const ws = stand.sockets[0]!;
    ws.send(frame('m1'));
    ws.send(frame('m2'));
    await waitFor('the ack of m2', () => stand.acks.length === 1);
    expect(stand.acks).toEqual(['m2']);
    ws.send(frame('m1'));
    await waitFor('the ack of m1', () => stand.acks.length === 2);
    expect(stand.acks).toEqual(['m2', 'm1']);
    expect((await events()).filter((e) => !e.startsWith('state:'))).toEqual([
      'error:a message listener failed on m1, left unacked: listener broke',
      'message:m2',
      'message:m1',
    ]);
  });
});
