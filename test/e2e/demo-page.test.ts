import { existsSync, mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { createDemoServer } from '../../src/demo/demo-server.js';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { messageStatus, postMessages, statusBecomes } from '../support/clients.js';

const CHROMIUM = [process.env.CHROMIUM_BIN, '/usr/bin/chromium'].find(
  (p): p is string => !!p && existsSync(p),
);
if (!CHROMIUM) {
  console.warn(
    'demo page browser test skipped: no chromium (scripts/provision-browser.sh installs it on Debian; or set CHROMIUM_BIN)',
  );
}
const ARTIFACTS = join(PROJECT_ROOT, 'test', 'artifacts');

let cluster: TestCluster;
let demo: Server;
let browser: Browser;

beforeAll(async () => {
  if (!CHROMIUM) return;
  cluster = await startCluster({ pushNodes: 2 });
  demo = createDemoServer({
    authUrl: cluster.auth.url,
    collectUrl: cluster.collect.url,
    dispatchUrl: cluster.dispatch.url,
    adminKey: KEYS.AUTH_ADMIN_KEY,
    ingestKey: KEYS.INGEST_API_KEY,
  });
  await new Promise<void>((r) => demo.listen(0, '127.0.0.1', r));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  demo?.close();
  await cluster?.stop();
});

describe.skipIf(!CHROMIUM)('the demo page in a real browser', () => {
  it('connects as a user, shows a message posted to the ingestion API, and acks it', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(demo.address() as AddressInfo).port}/`);
    await page.fill('#user', 'browser-user');
    await page.click('#connect-btn');
    await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });

    const [id] = await postMessages(cluster, {
      to: 'browser-user',
      payload: { text: 'hello, browser — ünïcode ✓' },
    });
    const row = page.locator(`tr[data-id="${id}"]`);
    await row.waitFor({ timeout: 10_000 });
    expect(await row.locator('td.payload').textContent()).toContain('hello, browser — ünïcode ✓');
    await statusBecomes(cluster, id as string, 'delivered');

    await row.locator('button', { hasText: 'ack' }).click();
    await expect.poll(() => messageStatus(cluster, id as string), { timeout: 5000 }).toBe('acked');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'demo-page.png'), fullPage: true });
    await page.close();
  });
});

describe.skipIf(!CHROMIUM)('a browser page of another origin', () => {
  it("gets a push node from dispatch's /v1/connect, preflighted or not", async () => {
    const page = await browser.newPage();
    // The demo's origin is not dispatch's: what a web app calling the cluster sees.
    await page.goto(`http://127.0.0.1:${(demo.address() as AddressInfo).port}/`);
    const connectUrl = `${cluster.dispatch.url}/v1/connect`;
    const answers = await page.evaluate(async (url) => {
      const ask = async (init: RequestInit): Promise<string> => {
        try {
          const res = await fetch(url, init);
          return `${res.status} ${((await res.json()) as { url?: string }).url ?? ''}`;
        } catch (err) {
          return `failed: ${(err as Error).message}`;
        }
      };
      return [
        await ask({ cache: 'no-store' } as RequestInit), // what src/client/push-client.ts sends
        await ask({ headers: { 'x-app-version': '1.2.3' } }), // preflighted
      ];
    }, connectUrl);
    for (const answer of answers) expect(answer).toMatch(/^200 ws:\/\/127\.0\.0\.1:\d+\/ws$/);
    await page.close();
  });
});
