// The benchmark: push-cluster against a bare `ws` server (the ceiling of this box) and
// Socket.IO 4 with the Redis adapter (the peer), every system as real processes.
// Run: npm run bench [-- --quick | --profile]. See bench/README.md.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import * as prettier from 'prettier';
import { startRedisServer, type RedisServer } from '../src/launcher/redis-server.js';
import { wsUrlOf } from '../test/support/clients.js';
import { KEYS, type TestCluster } from '../test/support/cluster.js';
import { latencyChart } from './lib/chart.js';
import {
  cleanupAll,
  ClientPool,
  clusterProcs,
  exitKills,
  GC_HOOK_ENV,
  interrupted,
  log,
  mintTokens,
  now,
  onCleanup,
  sleep,
  startBenchCluster,
  t0,
  useTokenAlgorithm,
  watchHealth,
} from './lib/harness.js';
import { BENCH_DIR, Worker } from './lib/ipc.js';
import { cpuRow, idleFootprint, openFiles } from './lib/probes.js';
import { markdownReport, type Results, type SystemName, type SystemResult } from './lib/report.js';
import { profileMarkdown, summarizeDir } from './profile-summary.js';
import { capacityTest } from './scenarios/capacity.js';
import { reconnectStorm } from './scenarios/reconnect-storm.js';
import { cpuWindow, machineWindow, round, summarize, type MachineUsage } from './stats.js';
import type { ClientKind, ClientSpec } from './workers/clients.js';
import type { LoadResult, LoadTarget } from './workers/loadgen.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    /** profile the services while clients connect (bench/results/profile-connect.md) */
    'profile-connect': { type: 'boolean', default: false },
    /** profile the services through a reconnect storm (bench/results/profile-storm.md) */
    'profile-storm': { type: 'boolean', default: false },
    /** only these (comma-separated): systems rawWs, socketio, cluster, or the scenarios
     *  capacity (on a cluster of its own) and storm; prints JSON, writes no results file */
    only: { type: 'string' },
    /** RS256 or ES256 (push nodes check tokens with auth's published key), or HS256 (auth
     *  checks each) */
    jwt: { type: 'string', default: 'RS256' },
  },
});
if (flags.jwt !== 'RS256' && flags.jwt !== 'ES256' && flags.jwt !== 'HS256')
  throw new Error('--jwt is RS256, ES256 or HS256');
useTokenAlgorithm(flags.jwt);
const ONLY = flags.only?.split(',');
const QUICK = flags.quick;
const P = {
  /** how clients' tokens are signed and checked (see bench/lib/harness.ts) */
  jwt: flags.jwt,
  /** unicast clients, per system, over two nodes */
  clients: QUICK ? 500 : 2000,
  clientWorkers: 2,
  saturateWarmMs: QUICK ? 1500 : 3000,
  saturateMs: QUICK ? 4000 : 10_000,
  /** fractions of each system's own saturation rate */
  sweep: [0.1, 0.25, 0.5, 0.75, 0.9],
  /** discarded start of each point: the pipeline takes a few seconds to settle at a new rate */
  pointWarmMs: QUICK ? 1500 : 3000,
  pointMs: QUICK ? 2500 : 6000,
  /** saturate mode: most messages sent and not yet delivered, messages per POST, POSTs in flight */
  window: 8000,
  batch: 200,
  concurrency: 8,
  tickMs: 5,
  fanoutUsers: QUICK ? 2000 : 10_000,
  fanoutRuns: QUICK ? 2 : 3,
  /** idle connections in all, spread over `capacityNodes` push nodes */
  capacityTarget: QUICK ? 5000 : 50_000,
  capacityNodes: 3,
  /** connections per client worker in the capacity test (a process holds < 20,000 files) */
  perCapacityWorker: 10_000,
  capacityConcurrency: 64,
  capacityDeadlineMs: QUICK ? 60_000 : 240_000,
  capacitySettleMs: 10_000,
  /** how long the push nodes' CPU with every connection open and idle is measured: one whole
   *  WS_PING_INTERVAL (20 s by default). A keep-alive round pings every socket over a quarter
   *  of the interval, so a 5 s window read 0.6–13% of a core per node depending on whether it
   *  fell on a round (8.8% and 35% summed in two full runs of the same code). */
  capacityIdleMs: 20_000,
  /** reconnect storm (--only storm): users on the push node that is SIGKILLed (of three) */
  stormUsers: QUICK ? 3000 : 15_000,
  stormWorkers: 3,
  /** the reconnecting clients' backoff, as the client library's defaults (250 ms, 10 s) */
  stormBackoffInitialMs: 250,
  stormBackoffMaxMs: 10_000,
  stormDeadlineMs: 60_000,
  idleMs: QUICK ? 3000 : 5000,
  drainTimeoutMs: 30_000,
  /** Before each measurement, wait (at most this much in all) while other processes of the
   *  box use more than `quietBelowPct` % of a core. */
  quietBudgetMs: QUICK ? 20_000 : 120_000,
  quietBelowPct: 25,
  ...(JSON.parse(process.env.BENCH_PARAMS ?? '{}') as object),
};

let quietBudget = P.quietBudgetMs;
/** Health check transitions Consul saw while the cluster was measured. */
const healthChanges: string[] = [];
const healthChangesByBench: string[] = [];
/** Waits (within the run's budget) until the rest of the box is quiet; returns its CPU %. */
async function waitQuiet(what: string): Promise<number> {
  let announced = false;
  for (;;) {
    const started = Date.now();
    const w = await machineWindow();
    await sleep(QUICK ? 500 : 1000);
    const u = await w.end();
    if (u.backgroundPct < P.quietBelowPct) return u.backgroundPct;
    quietBudget -= Date.now() - started;
    if (quietBudget <= 0) {
      log(`${what}: other processes use ${u.backgroundPct}% of a core; measuring anyway`);
      return u.backgroundPct;
    }
    if (!announced)
      log(`${what}: other processes use ${u.backgroundPct}% of a core; waiting for quiet`);
    announced = true;
  }
}

// ---- one system under test -----------------------------------------------------------------

interface System {
  name: SystemName;
  label: string;
  kind: ClientKind;
  target: LoadTarget;
  clients: ClientSpec[];
  procs: () => { name: string; pid: number }[];
}

interface Bench {
  sys: System;
  pool: ClientPool;
  load: Worker;
}

async function startLoad(sys: System, users: string[]): Promise<Worker> {
  const load = await Worker.start(`${sys.name}-load`, 'loadgen');
  const unregister = onCleanup(`${sys.name} load`, () => load.stop());
  const { payloadBytes } = await load.request<{ payloadBytes: number }>('init', {
    target: sys.target,
    users,
  });
  log(`${sys.label}: load generator ready (payload ${payloadBytes} bytes)`);
  return Object.assign(load, { unregister });
}

async function stopLoad(load: Worker & { unregister?: () => void }): Promise<void> {
  await load.request('close').catch(() => undefined);
  load.unregister?.();
  await load.stop();
}

async function saturation(b: Bench): Promise<SystemResult['saturation']> {
  const { pool, load, sys } = b;
  await waitQuiet(`${sys.label} saturation`);
  await pool.reset(false);
  pool.forward = (n) => load.tell('delivered', { n });
  const run = load.request<LoadResult>(
    'saturate',
    {
      durationMs: P.saturateWarmMs + P.saturateMs,
      window: P.window,
      batch: P.batch,
      concurrency: P.concurrency,
    },
    P.saturateWarmMs + P.saturateMs + 60_000,
  );
  await sleep(P.saturateWarmMs);
  const c0 = await pool.counts();
  const machine = await machineWindow();
  const cpu = await cpuWindow([
    ...sys.procs(),
    { name: 'harness: load generator', pid: load.pid },
    ...pool.workers.map((w, i) => ({ name: `harness: clients ${i + 1}`, pid: w.pid })),
  ]);
  await sleep(P.saturateMs);
  const c1 = await pool.counts();
  const usage = await cpu.end();
  const box: MachineUsage = await machine.end();
  const res = await run;
  pool.forward = undefined;
  const delivered = await pool.drain(res.sent);
  const after = await pool.counts();
  const msgsPerSec = ((c1.delivered - c0.delivered) / (c1.at - c0.at)) * 1000;
  log(
    `${sys.label}: saturation ${Math.round(msgsPerSec)} msgs/s (sent ${res.sent}, delivered ${delivered}, errors ${res.errors}, duplicates ${after.duplicates}; box ${box.machinePct}% busy, ${box.backgroundPct}% not ours)`,
  );
  return {
    msgsPerSec: Math.round(msgsPerSec),
    sent: res.sent,
    delivered,
    lost: res.sent - delivered,
    errors: res.errors,
    duplicates: after.duplicates,
    cpu: usage.map(cpuRow),
    machine: box,
  };
}

async function ratePoint(b: Bench, perSecond: number, fraction: number) {
  const { pool, load, sys } = b;
  await waitQuiet(`${sys.label} ${Math.round(fraction * 100)}%`);
  await pool.reset(true);
  const start = now();
  const machine = await machineWindow();
  const res = await load.request<LoadResult>(
    'rate',
    { perSecond, durationMs: P.pointWarmMs + P.pointMs, tickMs: P.tickMs },
    P.pointWarmMs + P.pointMs + 60_000,
  );
  const box = await machine.end();
  const delivered = await pool.drain(res.sent);
  const lat = await pool.latencies(start + P.pointWarmMs, start + P.pointWarmMs + P.pointMs);
  const s = summarize(lat);
  const ingest = summarize(
    (await pool.latencies(start + P.pointWarmMs, start + P.pointWarmMs + P.pointMs, true)).filter(
      Number.isFinite,
    ),
  );
  const point = {
    fraction,
    offeredPerSec: Math.round(perSecond),
    sentPerSec: Math.round((res.sent / res.elapsedMs) * 1000),
    sent: res.sent,
    lost: res.sent - delivered,
    skipped: res.skipped,
    errors: res.errors,
    ...s,
    /** send → createdAt (the system's ingest stamp, ms precision): p50 / p99 */
    ingestP50Ms: ingest.p50Ms,
    ingestP99Ms: ingest.p99Ms,
    backgroundPct: box.backgroundPct,
  };
  log(
    `${sys.label}: ${Math.round(fraction * 100)}% = ${point.offeredPerSec} msgs/s → p50 ${s.p50Ms} p90 ${s.p90Ms} p99 ${s.p99Ms} ms (n=${s.count}, lost ${point.lost}, skipped ${res.skipped}; send→createdAt p50 ${ingest.p50Ms} p99 ${ingest.p99Ms}; ${box.backgroundPct}% CPU not ours)`,
  );
  return point;
}

/** Connects the unicast clients, measures saturation, then latency at fractions of it. */
async function unicast(sys: System, fractions: number[]): Promise<SystemResult> {
  const pool = await ClientPool.start(sys.name, P.clientWorkers);
  const conn = await pool.connect(sys.kind, sys.clients);
  log(
    `${sys.label}: ${conn.opened} clients connected in ${Math.round(conn.ms)} ms (${conn.failed} failed, ${conn.retried} attempts retried${conn.firstError ? `; first error: ${conn.firstError}` : ''})`,
  );
  if (conn.opened < sys.clients.length)
    throw new Error(`${sys.label}: only ${conn.opened}/${sys.clients.length} clients connected`);
  await sleep(1000); // let the nodes finish binding users (routes, rooms)
  const load = await startLoad(
    sys,
    sys.clients.map((c) => c.user),
  );
  const b = { sys, pool, load };
  const sat = await saturation(b);
  const sweep = [];
  for (const f of fractions) sweep.push(await ratePoint(b, sat.msgsPerSec * f, f));
  await stopLoad(load);
  await pool.close();
  await pool.stop();
  const half = sweep.find((p) => p.fraction === 0.5);
  return {
    label: sys.label,
    clients: sys.clients.length,
    connect: { ms: Math.round(conn.ms), perSecond: Math.round(conn.perSecond) },
    saturation: sat,
    halfLoad: half,
    sweep,
  };
}

// ---- the three systems ---------------------------------------------------------------------

async function benchRawWs(): Promise<SystemResult> {
  const label = 'bare ws';
  const server = await Worker.start('raw-ws-server', 'raw-ws-server');
  const unregister = onCleanup('raw ws server', () => server.stop());
  const { port } = await server.request<{ port: number }>('listen');
  log(`${label}: server on port ${port}`);
  const users = Array.from({ length: P.clients }, (_, i) => `u${i}`);
  try {
    return await unicast(
      {
        name: 'rawWs',
        label,
        kind: 'raw',
        target: { kind: 'http', host: '127.0.0.1', port },
        clients: users.map((user) => ({ user, url: `ws://127.0.0.1:${port}/ws` })),
        procs: () => [{ name: 'ws server', pid: server.pid }],
      },
      [0.5],
    );
  } finally {
    unregister();
    await server.stop();
  }
}

async function benchSocketIo(): Promise<SystemResult> {
  const label = 'Socket.IO';
  const redis: RedisServer = await startRedisServer();
  const unregisterRedis = onCleanup('socket.io redis', () => redis.stop());
  const killRedis = (): void => redis.child.kill('SIGKILL');
  exitKills.add(killRedis);
  const nodes = await Promise.all([0, 1].map((i) => Worker.start(`sio-node-${i}`, 'sio-node')));
  const unregisterNodes = onCleanup('socket.io nodes', async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  });
  try {
    const ports = await Promise.all(
      nodes.map((n) => n.request<{ port: number }>('listen', { redisUrl: redis.url })),
    );
    log(`${label}: nodes on ports ${ports.map((p) => p.port).join(', ')}, redis ${redis.url}`);
    const users = Array.from({ length: P.clients }, (_, i) => `u${i}`);
    return await unicast(
      {
        name: 'socketio',
        label,
        kind: 'sio',
        target: { kind: 'sio', redisUrl: redis.url },
        clients: users.map((user, i) => ({
          user,
          url: `http://127.0.0.1:${ports[i % 2]?.port}`,
        })),
        procs: () => [
          ...nodes.map((n, i) => ({ name: `socket.io node ${i + 1}`, pid: n.pid })),
          { name: 'redis-server', pid: redis.child.pid as number },
        ],
      },
      P.sweep,
    );
  } finally {
    unregisterNodes();
    await Promise.all(nodes.map((n) => n.stop()));
    unregisterRedis();
    await redis.stop();
    exitKills.delete(killRedis);
  }
}

function clusterSystem(cluster: TestCluster, users: string[], tokens: string[]): System {
  return {
    name: 'cluster',
    label: 'push-cluster',
    kind: 'cluster',
    target: {
      kind: 'http',
      host: '127.0.0.1',
      port: cluster.collect.port,
      key: KEYS.INGEST_API_KEY,
    },
    clients: users.map((user, i) => ({ user, url: wsUrlOf(cluster, i % 2), token: tokens[i] })),
    procs: () => clusterProcs(cluster),
  };
}

async function benchCluster(): Promise<{
  result: SystemResult;
  fanout: Results['fanout'];
  connections: Results['connections'];
  idle: Results['idle'];
}> {
  const cluster = await startBenchCluster(GC_HOOK_ENV);
  const health = watchHealth(cluster);
  try {
    log(
      `push-cluster: up (collect :${cluster.collect.port}, push :${cluster.push.map((p) => p.port).join(', :')})`,
    );
    await sleep(2000);
    const idle = { processes: await idleFootprint(clusterProcs(cluster), P.idleMs) };
    log(`push-cluster: idle footprint measured over ${P.idleMs} ms`);

    // (a) unicast
    const users = Array.from({ length: P.clients }, (_, i) => `bench-${i}`);
    const tokens = await mintTokens(cluster, users);
    log(`push-cluster: ${tokens.length} tokens minted through auth`);
    const sys = clusterSystem(cluster, users, tokens);
    const result = await unicast(sys, P.sweep);

    // (c) fan-out, over both nodes
    const fanout = await fanoutTest(cluster, users, tokens);

    // (b) connection capacity, over three push nodes (a third one is started)
    const connections = await capacityTest(cluster, P);
    return { result, fanout, connections, idle };
  } finally {
    const seen = health.stop();
    healthChanges.push(...seen.changes);
    healthChangesByBench.push(...seen.byBench);
    log('push-cluster: stopping');
    await cluster.stop();
  }
}

async function fanoutTest(
  cluster: TestCluster,
  users: string[],
  tokens: string[],
): Promise<Results['fanout']> {
  const pool = await ClientPool.start('fanout', P.clientWorkers);
  const all = Array.from({ length: P.fanoutUsers }, (_, i) => users[i] ?? `fan-${i}`);
  const specs = all.map((user, i) => ({ user, url: wsUrlOf(cluster, i % 2), token: tokens[i] }));
  const conn = await pool.connect('cluster', specs, { concurrency: 32, sign: true });
  log(
    `fan-out: ${conn.opened} users connected in ${Math.round(conn.ms)} ms (${conn.failed} failed, ${conn.retried} attempts retried${conn.firstError ? `; first error: ${conn.firstError}` : ''})`,
  );
  await sleep(1500);
  const base = JSON.stringify({ f: 'fan-0', t: now(), pad: '' }).length;
  const pad = 'x'.repeat(Math.max(0, 200 - base));
  const runs: {
    lastDeliveryMs: number;
    acceptedMs: number;
    p50Ms: number;
    p99Ms: number;
    reached: number;
  }[] = [];
  for (let r = 0; r < P.fanoutRuns; r++) {
    await pool.reset(false);
    const tag = `fan-${r}`;
    const start = now();
    const res = await fetch(`${cluster.collect.url}/v1/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ to: all, payload: { f: tag, t: start, pad } }),
    });
    const acceptedMs = now() - start;
    if (res.status !== 202)
      throw new Error(`fan-out POST answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
    await pool.drain(all.length, 30_000);
    const arrivals = await pool.fanoutArrivals(tag);
    const lat = arrivals.map((a) => a - start);
    const s = summarize(lat);
    runs.push({
      lastDeliveryMs: s.maxMs,
      acceptedMs: round(acceptedMs),
      p50Ms: s.p50Ms,
      p99Ms: s.p99Ms,
      reached: arrivals.length,
    });
    log(
      `fan-out run ${r + 1}: ${arrivals.length}/${all.length} users, 202 after ${acceptedMs.toFixed(1)} ms, last socket after ${s.maxMs} ms (p50 ${s.p50Ms})`,
    );
    await sleep(1000);
  }
  await pool.close();
  await pool.stop();
  const sorted = [...runs].sort((a, b) => a.lastDeliveryMs - b.lastDeliveryMs);
  const median = sorted[Math.floor(sorted.length / 2)] as (typeof runs)[number];
  return {
    users: all.length,
    connected: conn.opened,
    connectRetried: conn.retried,
    lastDeliveryMs: median.lastDeliveryMs,
    acceptedMs: median.acceptedMs,
    p50Ms: median.p50Ms,
    reached: median.reached,
    runs,
  };
}

/** Runs one scenario on a cluster of its own, with `pushNodes` push nodes from the start. */
async function onOwnCluster<T>(
  pushNodes: number,
  scenario: (cluster: TestCluster) => Promise<T>,
): Promise<T> {
  const cluster = await startBenchCluster(GC_HOOK_ENV, pushNodes);
  const health = watchHealth(cluster);
  try {
    return await scenario(cluster);
  } finally {
    const seen = health.stop();
    healthChanges.push(...seen.changes);
    healthChangesByBench.push(...seen.byBench);
    await cluster.stop();
  }
}

// ---- profile mode ----------------------------------------------------------------------------

async function profile(): Promise<void> {
  const dir = `/tmp/push-cluster-prof-${process.pid}`;
  const cluster = await startBenchCluster({
    NODE_OPTIONS: `--import ${BENCH_DIR}profile-hook.mjs`,
    BENCH_PROF_DIR: dir,
  });
  try {
    const users = Array.from({ length: P.clients }, (_, i) => `bench-${i}`);
    const tokens = await mintTokens(cluster, users);
    const sys = clusterSystem(cluster, users, tokens);
    const pool = await ClientPool.start('profile', P.clientWorkers);
    const conn = await pool.connect('cluster', sys.clients);
    log(`profile: ${conn.opened} clients connected`);
    await sleep(1000);
    const load = await startLoad(sys, users);
    const services = [cluster.collect, cluster.dispatch, ...cluster.push];
    for (const s of services) s.child.kill('SIGUSR2'); // start profiling
    const sat = await saturation({ sys, pool, load });
    for (const s of services) s.child.kill('SIGUSR2'); // stop and write
    log(`profile: saturation under the profiler ${sat.msgsPerSec} msgs/s; profiles in ${dir}`);
    await sleep(1000);
    await stopLoad(load);
    await pool.close();
    await pool.stop();
    const summaries = await summarizeDir(dir, 10);
    const md =
      `# CPU profile of push-cluster under unicast saturation\n\n` +
      `${P.clients} clients, ${P.saturateWarmMs + P.saturateMs} ms of saturation, ${sat.msgsPerSec} msgs/s delivered while profiled (sampling every 0.5 ms). Self time per function; "% of busy" excludes idle time.\n\n` +
      profileMarkdown(summaries);
    await mkdir(`${BENCH_DIR}results`, { recursive: true });
    await writeFile(`${BENCH_DIR}results/profile.md`, await pretty(md, 'profile.md'));
    process.stdout.write(md);
  } finally {
    await cluster.stop();
  }
}

/** Where a connect's CPU goes: 10,000 clients connect to two push nodes under the profiler. */
async function profileConnect(): Promise<void> {
  const dir = `/tmp/push-cluster-prof-${process.pid}`;
  const clients = 10_000;
  const cluster = await startBenchCluster({
    NODE_OPTIONS: `--import ${BENCH_DIR}profile-hook.mjs`,
    BENCH_PROF_DIR: dir,
  });
  try {
    const specs: ClientSpec[] = Array.from({ length: clients }, (_, i) => ({
      user: `conn-${i}`,
      url: wsUrlOf(cluster, i % cluster.push.length),
    }));
    const pool = await ClientPool.start('profile', P.clientWorkers);
    const services = [cluster.auth, cluster.collect, ...cluster.push];
    for (const s of services) s.child.kill('SIGUSR2'); // start profiling
    const conn = await pool.connect('cluster', specs, { concurrency: 64, sign: true });
    for (const s of services) s.child.kill('SIGUSR2'); // stop and write
    log(
      `profile-connect: ${conn.opened} connected at ${Math.round(conn.perSecond)}/s under the profiler`,
    );
    await sleep(1000);
    await pool.close();
    await pool.stop();
    const summaries = await summarizeDir(dir, 12);
    const md =
      `# CPU profile of push-cluster while clients connect\n\n` +
      `${conn.opened} clients (tokens ${P.jwt}) connected to ${cluster.push.length} push nodes at ${Math.round(conn.perSecond)}/s while profiled (sampling every 0.5 ms). Self time per function; "% of busy" excludes idle time.\n\n` +
      profileMarkdown(summaries);
    await mkdir(`${BENCH_DIR}results`, { recursive: true });
    await writeFile(
      `${BENCH_DIR}results/profile-connect.md`,
      await pretty(md, 'profile-connect.md'),
    );
    process.stdout.write(md);
  } finally {
    await cluster.stop();
  }
}

/** Where a reconnect storm's CPU goes: the storm scenario with every surviving service under
 *  the profiler from the kill until every user had the message. */
async function profileStorm(): Promise<void> {
  const dir = `/tmp/push-cluster-prof-${process.pid}`;
  const cluster = await startBenchCluster(
    { NODE_OPTIONS: `--import ${BENCH_DIR}profile-hook.mjs`, BENCH_PROF_DIR: dir },
    3,
  );
  try {
    const signal = (procs: { child: { kill(s: NodeJS.Signals): void } }[]): void => {
      for (const p of procs) p.child.kill('SIGUSR2');
    };
    const storm = await reconnectStorm(cluster, P, { atKill: signal, atEnd: signal });
    await sleep(1000);
    const summaries = await summarizeDir(dir, 12);
    const md =
      `# CPU profile of push-cluster through a reconnect storm\n\n` +
      `${storm.users} users of a SIGKILLed push node (tokens ${P.jwt}) reconnected to ${storm.pushNodes - 1} others in ${round(storm.allReconnectedMs)} ms and all had the message after ${round(storm.allReceivedMs)} ms, profiled from the kill (sampling every 0.5 ms). Self time per function; "% of busy" excludes idle time.\n\n` +
      profileMarkdown(summaries);
    await mkdir(`${BENCH_DIR}results`, { recursive: true });
    await writeFile(`${BENCH_DIR}results/profile-storm.md`, await pretty(md, 'profile-storm.md'));
    process.stdout.write(md);
  } finally {
    await cluster.stop();
  }
}

// ---- report ----------------------------------------------------------------------------------

async function pretty(text: string, file: string): Promise<string> {
  const options = (await prettier.resolveConfig(`${BENCH_DIR}results/${file}`)) ?? {};
  return prettier.format(text, { ...options, filepath: `${BENCH_DIR}results/${file}` });
}

async function main(): Promise<void> {
  if (flags.profile) return profile();
  if (flags['profile-connect']) return profileConnect();
  if (flags['profile-storm']) return profileStorm();
  if (ONLY) {
    const partial: Record<string, unknown> = {};
    if (ONLY.includes('rawWs')) partial.rawWs = await benchRawWs();
    if (ONLY.includes('socketio')) partial.socketio = await benchSocketIo();
    if (ONLY.includes('cluster')) partial.cluster = await benchCluster();
    if (ONLY.includes('capacity'))
      partial.connections = await onOwnCluster(P.capacityNodes, (c) => capacityTest(c, P));
    // Three push nodes: one is killed, two take its users.
    if (ONLY.includes('storm')) partial.storm = await onOwnCluster(3, (c) => reconnectStorm(c, P));
    if (ONLY.length > 0) {
      partial.healthChanges = healthChanges;
      partial.healthChangesByBench = healthChangesByBench;
    }
    process.stdout.write(JSON.stringify(partial, null, 2) + '\n');
    return;
  }
  const started = new Date();
  const rawWs = await benchRawWs();
  const socketio = await benchSocketIo();
  const c = await benchCluster();
  const results: Results = {
    mode: QUICK ? 'quick' : 'full',
    startedAt: started.toISOString(),
    durationSeconds: Math.round((performance.now() - t0) / 1000),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? '',
      memoryGiB: round(totalmem() / 2 ** 30, 1),
      node: process.version,
      openFilesLimit: await openFiles(process.pid),
      ephemeralPorts: (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'))
        .trim()
        .split(/\s+/)
        .join('-'),
    },
    params: P,
    e2e: {
      msgsPerSec: c.result.saturation.msgsPerSec,
      p50Ms: c.result.halfLoad?.p50Ms ?? NaN,
      p90Ms: c.result.halfLoad?.p90Ms ?? NaN,
      p99Ms: c.result.halfLoad?.p99Ms ?? NaN,
    },
    rawWs: {
      msgsPerSec: rawWs.saturation.msgsPerSec,
      p50Ms: rawWs.halfLoad?.p50Ms ?? NaN,
      p99Ms: rawWs.halfLoad?.p99Ms ?? NaN,
    },
    socketio: {
      msgsPerSec: socketio.saturation.msgsPerSec,
      p50Ms: socketio.halfLoad?.p50Ms ?? NaN,
      p90Ms: socketio.halfLoad?.p90Ms ?? NaN,
      p99Ms: socketio.halfLoad?.p99Ms ?? NaN,
    },
    connections: c.connections,
    fanout: c.fanout,
    idle: c.idle,
    healthChanges,
    healthChangesByBench,
    systems: { rawWs, socketio, cluster: c.result },
  };
  await mkdir(`${BENCH_DIR}results`, { recursive: true });
  await writeFile(
    `${BENCH_DIR}results/latest.json`,
    await pretty(JSON.stringify(results, null, 2), 'latest.json'),
  );
  const series = (r: SystemResult, color: string, name: string) => [
    {
      label: `${name} p50`,
      color,
      points: r.sweep.map((p) => ({ x: p.offeredPerSec, y: p.p50Ms })),
    },
    {
      label: `${name} p99`,
      color,
      dashed: true,
      points: r.sweep.map((p) => ({ x: p.offeredPerSec, y: p.p99Ms })),
    },
  ];
  await writeFile(
    `${BENCH_DIR}results/latency.svg`,
    latencyChart({
      title: `Ingest → socket latency vs offered load (${results.mode} run, ${results.machine.cpus} CPUs, ${P.clients} clients)`,
      xLabel: 'offered load (messages/s)',
      yLabel: 'latency (ms, log scale)',
      series: [
        ...series(c.result, '#1f77b4', 'push-cluster'),
        ...series(socketio, '#ff7f0e', 'Socket.IO'),
      ],
      markers: [
        { x: c.result.saturation.msgsPerSec, label: 'push-cluster saturation', color: '#1f77b4' },
        { x: socketio.saturation.msgsPerSec, label: 'Socket.IO saturation', color: '#ff7f0e' },
      ],
    }),
  );
  process.stdout.write(markdownReport(results));
  log('wrote bench/results/latest.json and bench/results/latency.svg');
}

try {
  await main();
  await cleanupAll();
} catch (err) {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  await cleanupAll();
  process.exitCode = 1;
}
if (!interrupted) process.exit(process.exitCode ?? 0);
