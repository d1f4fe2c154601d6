// The CPU cost of a message's whole life in the SQLite store, the way collect drives it under
// load: insert, mark delivered, mark acked, purge.
//
//   npx tsx bench/store-cycle.ts [--messages N] [--concurrency C] [--ack-batch A]
//     [--delivered-share S] [--unacked-share U] [--users N] [--payload BYTES] [--path FILE]
//
// - insert: one insert call of 1 message per ingest request, C (256) in flight at once, so
//   concurrent calls share one commit (group commit, fsynced);
// - markDelivered: every turn of the loop, one call with share S (0.9) of the messages
//   inserted since the last turn (collect writes most marks late, in one call per batch);
// - markAcked: the messages inserted since the last turn, less share U (0.01) left unacked,
//   in calls of A (100) acks grouped by user, as ack requests from push nodes arrive;
// - purge: the store's own timer (every 250 ms, acked retention 500 ms), and at the end
//   purge() until every acked message is gone.
// The file is in a fresh temporary folder (or at --path).
//
// Prints one JSON line: msgs/s over the whole cycle, CPU µs per message (process.cpuUsage,
// user + system, of this process: the store's work and the bench's own small share), the
// main thread's busy time per message (event-loop utilization × time: CPU of the main thread
// and the time it blocks on the disk, e.g. an fsync; what limits collect's throughput), the
// time spent in each synchronous store call per message, and the counts at the end (acked 0,
// the unacked share left as pending or delivered) as a check.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { monotonicFactory } from 'ulid';
import type { NewMessage, UserAcks } from '../src/store/message-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    concurrency: { type: 'string', default: '256' },
    'ack-batch': { type: 'string', default: '100' },
    'delivered-share': { type: 'string', default: '0.9' },
    'unacked-share': { type: 'string', default: '0.01' },
    users: { type: 'string', default: '10000' },
    payload: { type: 'string', default: '200' },
    path: { type: 'string' },
  },
});
const total = Number(args.messages);
const concurrency = Number(args.concurrency);
const ackBatch = Number(args['ack-batch']);
const deliveredShare = Number(args['delivered-share']);
const unackedShare = Number(args['unacked-share']);
const users = Number(args.users);
const payloadBytes = Number(args.payload);
const retentionMs = 500;

const dir = args.path ? undefined : await mkdtemp(join(tmpdir(), 'store-cycle-'));
const file = args.path ?? join(dir!, 'messages.sqlite');
const store = SqliteStore.open({ path: file, ackedRetentionMs: retentionMs, purgeIntervalMs: 250 });

const ulid = monotonicFactory();
const filler = 'x'.repeat(Math.max(0, payloadBytes - 20));
const retry = { baseMs: 10_000, maxMs: 60_000 };
let sent = 0;
let inserted: { id: string; to: string }[] = [];
let insertsDone = false;
/** Milliseconds spent in each synchronous store call (better-sqlite3 blocks for its work). */
const spent = { markDelivered: 0, markAcked: 0, purge: 0 };
let acked = 0;

async function inserter(): Promise<void> {
  while (sent < total) {
    const n = sent++;
    const now = Date.now();
    const m: NewMessage = {
      id: ulid(now),
      to: `user-${n % users}`,
      payload: { n, text: filler },
      createdAt: new Date(now),
      expiresAt: new Date(now + 3_600_000),
      nextAttemptAt: new Date(now + 5000),
    };
    await store.insert([m]);
    inserted.push({ id: m.id, to: m.to });
  }
}

/** Marks and acks what was inserted since its last turn, as collect does for push nodes. */
async function deliverer(): Promise<void> {
  let n = 0;
  while (!insertsDone || inserted.length > 0) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const batch = inserted;
    inserted = [];
    if (batch.length === 0) continue;
    const at = new Date();
    const delivered: string[] = [];
    const toAck: { id: string; to: string }[] = [];
    for (const m of batch) {
      n++;
      // Deterministic shares: every message is a point on a low-discrepancy sequence.
      const r = (n * 0.6180339887) % 1;
      if (r < deliveredShare) delivered.push(m.id);
      if ((n * 0.7548776662) % 1 >= unackedShare) toAck.push(m);
    }
    let t0 = performance.now();
    await store.markDelivered(delivered, at, retry);
    spent.markDelivered += performance.now() - t0;
    for (let i = 0; i < toAck.length; i += ackBatch) {
      const byUser = new Map<string, string[]>();
      for (const m of toAck.slice(i, i + ackBatch)) {
        const ids = byUser.get(m.to);
        if (ids) ids.push(m.id);
        else byUser.set(m.to, [m.id]);
      }
      const acks: UserAcks[] = [...byUser].map(([userId, ids]) => ({ userId, ids }));
      t0 = performance.now();
      acked += await store.markAcked(acks, new Date());
      spent.markAcked += performance.now() - t0;
    }
  }
}

// The store's timer purges too; its time is counted in the CPU total, not in spent.purge.
const cpu0 = process.cpuUsage();
const elu0 = performance.eventLoopUtilization();
const started = performance.now();
const delivering = deliverer();
await Promise.all(Array.from({ length: concurrency }, inserter));
insertsDone = true;
await delivering;
const t0 = performance.now();
const end = new Date(Date.now() + retentionMs + 1);
let purged = 0;
for (;;) {
  const n = await store.purge(end);
  purged += n;
  if (n === 0) break;
}
spent.purge += performance.now() - t0;
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpu0);
const elu = performance.eventLoopUtilization(elu0);
const counts = await store.countByStatus();
await store.close();
if (dir) await rm(dir, { recursive: true, force: true });

const perMessage = (ms: number): number => Number(((ms * 1000) / total).toFixed(2));
console.log(
  JSON.stringify({
    messages: total,
    concurrency,
    ackBatch,
    seconds: Number(seconds.toFixed(2)),
    msgsPerSecond: Math.round(total / seconds),
    cpuUsPerMessage: Number(((cpu.user + cpu.system) / total).toFixed(2)),
    userUsPerMessage: Number((cpu.user / total).toFixed(2)),
    systemUsPerMessage: Number((cpu.system / total).toFixed(2)),
    mainThreadBusyUsPerMessage: perMessage(elu.active),
    usPerMessageIn: {
      markDelivered: perMessage(spent.markDelivered),
      markAcked: perMessage(spent.markAcked),
      finalPurge: perMessage(spent.purge),
    },
    acked,
    finalPurge: purged,
    counts,
  }),
);
