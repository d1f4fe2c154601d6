// Ingest throughput of a message store, inserting the way collect does: one insert call per
// ingest request, many requests in flight at once.
//
//   npx tsx bench/store-throughput.ts [--store sqlite|sqlite-memory|mongodb] [--messages N]
//     [--batch B] [--concurrency C] [--payload BYTES] [--path FILE]
//     [--retention MS --seconds S]
//
// sqlite writes a file in a fresh temporary folder (or at --path); mongodb needs MONGODB_URL.
// Prints one JSON line: msgs/s, insert-call latency percentiles, and the SQLite file size.
//
// With --retention (SQLite only), it runs for --seconds instead of --messages: every message
// is acked right after its insert, the acked retention is MS and the purge runs every second,
// and it prints the file sizes (database and WAL) every few seconds: under a steady load they
// should level off at about rate × retention messages.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { monotonicFactory } from 'ulid';
import type { MessageStore, NewMessage } from '../src/store/message-store.js';
import { MongoStore } from '../src/store/mongo-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';

const { values: args } = parseArgs({
  options: {
    store: { type: 'string', default: 'sqlite' },
    messages: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '256' },
    payload: { type: 'string', default: '64' },
    path: { type: 'string' },
    retention: { type: 'string' },
    seconds: { type: 'string', default: '60' },
  },
});
const retentionMs = args.retention === undefined ? undefined : Number(args.retention);
const total = Number(args.messages);
const batch = Number(args.batch);
const concurrency = Number(args.concurrency);
const payloadBytes = Number(args.payload);

async function open(): Promise<{ store: MessageStore; file?: string; done(): Promise<void> }> {
  switch (args.store) {
    case 'sqlite': {
      const dir = args.path ? undefined : await mkdtemp(join(tmpdir(), 'store-bench-'));
      const file = args.path ?? join(dir!, 'messages.sqlite');
      const store = SqliteStore.open({
        path: file,
        ...(retentionMs === undefined
          ? {}
          : { ackedRetentionMs: retentionMs, purgeIntervalMs: 1000 }),
      });
      return {
        store,
        file,
        done: async () => {
          if (dir) await rm(dir, { recursive: true, force: true });
        },
      };
    }
    case 'sqlite-memory':
      return { store: SqliteStore.open({ path: ':memory:' }), done: async () => {} };
    case 'mongodb': {
      const url = process.env.MONGODB_URL;
      if (!url) throw new Error('--store mongodb needs MONGODB_URL');
      const db = `store_bench_${Date.now()}`;
      const store = await MongoStore.connect(url, db);
      return { store, done: async () => {} };
    }
    default:
      throw new Error(`unknown --store ${args.store}`);
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
}

const { store, file, done } = await open();
const fileSizes = async (): Promise<{ db: number; wal: number }> => ({
  db: file ? (await stat(file)).size : 0,
  wal: file
    ? await stat(`${file}-wal`).then(
        (s) => s.size,
        () => 0,
      )
    : 0,
});
const durationMs = retentionMs === undefined ? Infinity : Number(args.seconds) * 1000;
const more = (): boolean => (durationMs === Infinity ? sent < total : !timeUp);
let timeUp = false;
const ulid = monotonicFactory();
const filler = 'x'.repeat(Math.max(0, payloadBytes - 20));
const ttlMs = 3_600_000;
const latencies: number[] = [];
let sent = 0;

/** One "ingest request": `batch` messages for distinct users, one insert call. */
async function request(): Promise<void> {
  const now = new Date();
  const messages: NewMessage[] = [];
  for (let i = 0; i < batch && more(); i++, sent++) {
    messages.push({
      id: ulid(now.getTime()),
      to: `user-${sent % 10_000}`,
      payload: { n: sent, text: filler },
      createdAt: now,
      expiresAt: new Date(now.getTime() + ttlMs),
      nextAttemptAt: new Date(now.getTime() + 5000),
    });
  }
  const t0 = performance.now();
  const { inserted } = await store.insert(messages);
  latencies.push(performance.now() - t0);
  if (retentionMs !== undefined) toAck.push(...inserted.map((m) => ({ id: m.id, to: m.to })));
}

/**
 * With --retention, every message is delivered and acked about 10 ms after its insert, the
 * way collect sees it: one markDelivered per batch, then one markAcked with every user's
 * acks (the push node's ack batcher sends what it got in 10 ms).
 */
let toAck: { id: string; to: string }[] = [];
async function ackLoop(): Promise<void> {
  while (more() || toAck.length > 0) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    const batch = toAck;
    toAck = [];
    if (batch.length === 0) continue;
    const at = new Date();
    await store.markDelivered(
      batch.map((m) => m.id),
      at,
      { baseMs: 10_000, maxMs: 60_000 },
    );
    const byUser = new Map<string, string[]>();
    for (const m of batch) byUser.set(m.to, [...(byUser.get(m.to) ?? []), m.id]);
    await store.markAcked(
      [...byUser].map(([userId, ids]) => ({ userId, ids })),
      at,
    );
  }
}

async function worker(): Promise<void> {
  while (more()) await request();
}

const started = performance.now();
const samples: { s: number; sent: number; dbBytes: number; walBytes: number; rows: number }[] = [];
const sampler =
  retentionMs === undefined
    ? undefined
    : setInterval(() => {
        void (async () => {
          const { db, wal } = await fileSizes();
          const c = await store.countByStatus();
          samples.push({
            s: Math.round((performance.now() - started) / 1000),
            sent,
            dbBytes: db,
            walBytes: wal,
            rows: c.pending + c.delivered + c.acked + c.failed,
          });
        })();
      }, 5000);
if (durationMs !== Infinity) setTimeout(() => (timeUp = true), durationMs);
await Promise.all([
  ...Array.from({ length: concurrency }, worker),
  ...(retentionMs === undefined ? [] : [ackLoop()]),
]);
if (sampler) clearInterval(sampler);
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const counts = await store.countByStatus();
await store.close();
const fileBytes = file ? (await fileSizes()).db : undefined;
await done();

console.log(
  JSON.stringify({
    store: args.store,
    messages: sent,
    batch,
    concurrency,
    payloadBytes,
    seconds: Number(seconds.toFixed(2)),
    msgsPerSecond: Math.round(sent / seconds),
    insertMs: {
      p50: Number(percentile(latencies, 50).toFixed(2)),
      p99: Number(percentile(latencies, 99).toFixed(2)),
      max: Number(percentile(latencies, 100).toFixed(2)),
    },
    stored: counts.pending,
    fileBytes,
    ...(retentionMs === undefined ? {} : { retentionMs, samples }),
  }),
);
