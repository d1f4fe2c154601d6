// A collect that starts with a large backlog of due messages hands it off a batch at a time.
// It used to claim every due message at once: 25,631 messages of 60 KB ran collect out of
// heap at every start under npm start, a crash loop that stopped ingestion for everyone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monotonicFactory } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { SqliteStore } from '../../src/store/sqlite-store.js';
import { mintToken, TestClient, wsUrlOf } from '../support/clients.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { stageCount } from '../support/metrics.js';

const ulid = monotonicFactory();
/** 8,000 messages of 30 KB: 240 MB of payload, due at once, against a heap of 384 MB. */
const MESSAGES = 8000;
const PAYLOAD = 'x'.repeat(30 * 1024);
const HEAP_MB = 384;

const usingMongo = process.env.MONGODB_URL !== undefined;
let cluster: TestCluster | undefined;
let dir = '';

beforeAll(async () => {
  if (usingMongo) return;
  dir = mkdtempSync(join(tmpdir(), 'sweep-backlog-'));
  const path = join(dir, 'messages.sqlite');
  // Written straight into the file collect will open: messages stored by an earlier collect
  // that never handed them off (it crashed), all due now.
  const store = SqliteStore.open({ path, purgeIntervalMs: 0 });
  const now = Date.now();
  for (let i = 0; i < MESSAGES; i += 500) {
    await store.insert(
      Array.from({ length: 500 }, (_, k) => ({
        id: ulid(),
        to: `u${i + k}`,
        payload: { n: i + k, pad: PAYLOAD },
        createdAt: new Date(now),
        expiresAt: new Date(now + 3_600_000),
        nextAttemptAt: new Date(now),
      })),
    );
  }
  await store.close();
  cluster = await startCluster({
    pushNodes: 1,
    env: { SQLITE_PATH: path, NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` },
  });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a collect that starts with a large backlog of due messages', () => {
  it('hands every one of them off without running out of heap, and a user then gets theirs', async () => {
    if (usingMongo) {
      console.log(
        'skipped: this test writes its backlog into the SQLite file (MONGODB_URL is set)',
      );
      return;
    }
    const c = cluster as TestCluster;
    await waitFor(
      'every due message to reach dispatch',
      async () => {
        expect(c.collect.child.running, 'collect is running').toBe(true);
        return (await stageCount(c.dispatch.url, 'handed_off')) >= MESSAGES;
      },
      120_000,
    );
    expect(c.collect.child.running).toBe(true);
    expect((await fetch(`${c.collect.url}/health`)).status).toBe(200);
    const user = 'u7999';
    const client = await TestClient.connect(wsUrlOf(c, 0), user, await mintToken(c, user));
    try {
      const [message] = await client.waitForMessages(1);
      expect((message?.payload as { n: number }).n).toBe(7999);
    } finally {
      client.close();
    }
  }, 180_000);
});
