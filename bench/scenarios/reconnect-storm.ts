// Reconnect storm: a push node holding `stormUsers` connected users is SIGKILLed, and one
// message to each of those users is posted right after. Their clients reconnect through
// dispatch's GET /v1/connect with jittered backoff (bench/workers/reconnecting-clients.ts).
// Reported: the time from the kill until every user is connected to another node, and
// until every user has the message sent after the kill (it reaches them by the replay of
// their new node, or live once they are bound again), with the CPU of every process over
// the storm, to show what dominated it.
import { KEYS, type ServiceProc, type TestCluster } from '../../test/support/cluster.js';
import { clusterProcs, log, now, onCleanup, signOptions, sleep } from '../lib/harness.js';
import { Worker } from '../lib/ipc.js';
import { cpuRow, metric, pushConnections, requestsByRoute } from '../lib/probes.js';
import type { CpuRow } from '../lib/report.js';
import { cpuSeries, cpuWindow, machineWindow, round, summarize } from '../stats.js';
import type { StormConnectArgs, StormStatus } from '../workers/reconnecting-clients.js';

export interface StormParams {
  /** users connected to the node that is killed */
  stormUsers: number;
  /** client workers holding them (each well under the 20,000 open files of a process) */
  stormWorkers: number;
  stormBackoffInitialMs: number;
  stormBackoffMaxMs: number;
  /** how long after the kill the scenario waits for every user at most */
  stormDeadlineMs: number;
}

export interface StormResult {
  users: number;
  pushNodes: number;
  /** the kill → every user open on another node; NaN if some never were by the deadline */
  allReconnectedMs: number;
  reconnectedP50Ms: number;
  reconnectedP99Ms: number;
  reconnected: number;
  /** the kill → every user has the message posted right after it */
  allReceivedMs: number;
  receivedP50Ms: number;
  receivedP99Ms: number;
  received: number;
  /** the kill → the 202s of the posts */
  postedMs: number;
  /** the kill → the killed node no longer passing in Consul */
  evictedMs: number;
  /** token checks auth answered and replay requests collect served (single pages, and first
   *  pages of many users), from the kill to the end */
  authVerifies: number;
  collectReplays: number;
  /** requests collect and dispatch answered from the kill to the end, by route */
  collectServed: Record<string, number>;
  dispatchServed: Record<string, number>;
  /** p50 and p99 of the successful /v1/connect call and handshake of each user (ms) */
  askP50Ms: number;
  askP99Ms: number;
  handshakeP50Ms: number;
  handshakeP99Ms: number;
  connectCalls: number;
  failedAttempts: number;
  gaveUp: number;
  /** failed attempts by cause, over every worker */
  errors: Record<string, number>;
  /** connections each surviving node holds at the end */
  survivors: { port: number; connections: number }[];
  /** CPU (% of one core) of each process from the kill until every user had the message */
  cpu: CpuRow[];
  /** CPU (% of one core) of processes not ours meanwhile */
  backgroundPct: number;
}

const TAG = 'storm';
/** One POST may create at most 10,000 messages (MAX_MESSAGES_PER_REQUEST). */
const POST_CHUNK = 5000;

async function passing(cluster: TestCluster, id: string): Promise<boolean> {
  const res = await fetch(`http://${cluster.deps.consul.addr}/v1/health/service/push?passing=true`);
  return ((await res.json()) as { Service: { ID: string } }[]).some((e) => e.Service.ID === id);
}

/** Posts one message to each user (in chunks of recipients), all at once. */
async function postToAll(cluster: TestCluster, users: string[]): Promise<void> {
  const chunks: string[][] = [];
  for (let i = 0; i < users.length; i += POST_CHUNK) chunks.push(users.slice(i, i + POST_CHUNK));
  await Promise.all(
    chunks.map(async (to) => {
      const res = await fetch(`${cluster.collect.url}/v1/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ to, payload: { f: TAG, t: now() } }),
      });
      if (res.status !== 202)
        throw new Error(`storm POST answered ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    }),
  );
}

function tally(parts: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of parts) for (const [k, v] of Object.entries(p)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Times (ms after `from`) of the finite entries of every worker's array. */
function after(from: number, parts: Float64Array[]): number[] {
  const out: number[] = [];
  for (const p of parts) for (const t of p) if (Number.isFinite(t)) out.push(t - from);
  return out;
}

/** Called at the kill and once every user had the message (bench `--profile-storm`). */
export interface StormWatch {
  atKill(survivors: ServiceProc[]): void;
  atEnd(survivors: ServiceProc[]): void;
}

export async function reconnectStorm(
  cluster: TestCluster,
  P: StormParams,
  watch?: StormWatch,
): Promise<StormResult> {
  if (cluster.push.length < 2) throw new Error('the storm needs at least two push nodes');
  const victim = cluster.push[0] as ServiceProc;
  const survivors = cluster.push.slice(1);
  const users = Array.from({ length: P.stormUsers }, (_, i) => `storm-${i}`);
  const workers = await Promise.all(
    Array.from({ length: P.stormWorkers }, (_, i) =>
      Worker.start(`storm-clients-${i}`, 'reconnecting-clients'),
    ),
  );
  const unregister = onCleanup('storm clients', async () => {
    await Promise.all(workers.map((w) => w.stop()));
  });
  try {
    const results = await Promise.all(
      workers.map((w, wi) =>
        w.request<{ opened: number; failed: number }>(
          'connect',
          {
            users: users.filter((_, i) => i % workers.length === wi),
            url: `ws://127.0.0.1:${victim.port}/ws`,
            connectUrl: `${cluster.dispatch.url}/v1/connect`,
            sign: signOptions(),
            // Source addresses of their own, past those of the other client pools.
            localAddresses: [0, 1, 2, 3].map((k) => `127.0.0.${100 + 4 * wi + k}`),
            concurrency: 64,
            deadlineMs: 240_000,
            backoff: { initialMs: P.stormBackoffInitialMs, maxMs: P.stormBackoffMaxMs },
            maxAttempts: 30,
          } satisfies StormConnectArgs,
          300_000,
        ),
      ),
    );
    const opened = results.reduce((s, r) => s + r.opened, 0);
    log(
      `storm: ${opened} users connected to push :${victim.port} (${results.reduce((s, r) => s + r.failed, 0)} failed)`,
    );
    if (opened < users.length) throw new Error(`storm: only ${opened}/${users.length} connected`);
    // Every user bound in Redis and replayed to before the kill.
    await sleep(3000);
    log(
      `storm: push :${victim.port} reports ${await metric(victim.url, 'push_connections')} connections; killing it`,
    );

    await Promise.all(workers.map((w) => w.request('arm', { tag: TAG })));
    const authBefore = await requestsByRoute(cluster.auth.url);
    const collectBefore = await requestsByRoute(cluster.collect.url);
    const dispatchBefore = await requestsByRoute(cluster.dispatch.url);
    const procs = clusterProcs(cluster).filter((p) => p.pid !== victim.child.pid);
    const cpu = await cpuWindow([
      ...procs,
      ...workers.map((w, i) => ({ name: `harness: storm clients ${i + 1}`, pid: w.pid })),
    ]);
    const box = await machineWindow();
    const living = cluster.all().filter((p) => p !== victim);
    watch?.atKill(living);
    const killedAt = now();
    victim.child.kill('SIGKILL');
    const posted = postToAll(cluster, users).then(() => now() - killedAt);
    const evicted = (async () => {
      while (now() - killedAt < P.stormDeadlineMs) {
        if (!(await passing(cluster, victim.id).catch(() => true))) return now() - killedAt;
        await sleep(50);
      }
      return NaN;
    })();

    // Bounded: until every user has the message, or the deadline.
    let statuses: StormStatus[] = [];
    let lastLog = 0;
    const perSecond = await cpuSeries(
      [...procs, ...workers.map((w, i) => ({ name: `clients ${i + 1}`, pid: w.pid }))],
      1000,
    );
    for (;;) {
      statuses = await Promise.all(workers.map((w) => w.request<StormStatus>('status')));
      const reconnected = after(
        killedAt,
        statuses.map((s) => s.reopenedAt),
      ).length;
      const received = after(
        killedAt,
        statuses.map((s) => s.receivedAt),
      ).length;
      if (now() - lastLog > 2000) {
        lastLog = now();
        log(
          `storm: ${((now() - killedAt) / 1000).toFixed(1)} s after the kill: ${reconnected} reconnected, ${received} have the message`,
        );
      }
      if (
        (reconnected >= users.length && received >= users.length) ||
        now() - killedAt > P.stormDeadlineMs
      )
        break;
      await sleep(100);
    }
    for (const [i, second] of (await perSecond.stop()).entries())
      log(
        `storm: CPU in second ${i + 1} after the kill (% of a core): ${second.map((r) => `${r.name} ${Math.round(r.cpuPercent)}`).join(', ')}`,
      );
    watch?.atEnd(living);
    const usage = (await cpu.end()).map(cpuRow);
    const authServed = difference(await requestsByRoute(cluster.auth.url), authBefore);
    const collectServed = difference(await requestsByRoute(cluster.collect.url), collectBefore);
    const dispatchServed = difference(await requestsByRoute(cluster.dispatch.url), dispatchBefore);
    const { backgroundPct } = await box.end();
    const reopen = summarize(
      after(
        killedAt,
        statuses.map((s) => s.reopenedAt),
      ),
    );
    const got = summarize(
      after(
        killedAt,
        statuses.map((s) => s.receivedAt),
      ),
    );
    const sum = (f: (s: StormStatus) => number): number => statuses.reduce((n, s) => n + f(s), 0);
    const result: StormResult = {
      users: users.length,
      pushNodes: cluster.push.length,
      allReconnectedMs: reopen.count >= users.length ? reopen.maxMs : NaN,
      reconnectedP50Ms: reopen.p50Ms,
      reconnectedP99Ms: reopen.p99Ms,
      reconnected: reopen.count,
      allReceivedMs: got.count >= users.length ? got.maxMs : NaN,
      receivedP50Ms: got.p50Ms,
      receivedP99Ms: got.p99Ms,
      received: got.count,
      postedMs: Math.round(await posted),
      evictedMs: Math.round(await evicted),
      authVerifies: authServed['/v1/verify'] ?? 0,
      // Both replay routes: a page for one user, and first pages for many.
      collectReplays:
        (collectServed['/internal/unacked'] ?? 0) +
        (collectServed['/internal/unacked-first-pages'] ?? 0),
      collectServed,
      dispatchServed,
      ...timings(statuses),
      connectCalls: sum((s) => s.connectCalls),
      failedAttempts: sum((s) => s.failedAttempts),
      gaveUp: sum((s) => s.gaveUp),
      errors: tally(statuses.map((s) => s.errors)),
      survivors: await Promise.all(
        survivors.map(async (s) => ({
          port: s.port,
          connections: await pushConnections(cluster, s.port),
        })),
      ),
      cpu: usage,
      backgroundPct,
    };
    log(
      `storm: every user reconnected after ${result.allReconnectedMs} ms (p50 ${result.reconnectedP50Ms}, p99 ${result.reconnectedP99Ms}; ${result.reconnected}/${users.length}), ` +
        `every user had the message after ${result.allReceivedMs} ms (p50 ${result.receivedP50Ms}, p99 ${result.receivedP99Ms}; ${result.received}/${users.length}); ` +
        `posts answered 202 after ${result.postedMs} ms, node evicted from Consul after ${result.evictedMs} ms; ` +
        `auth answered ${result.authVerifies} token checks, collect ${result.collectReplays} replay requests; ${result.connectCalls} /v1/connect calls (p50 ${result.askP50Ms} ms, p99 ${result.askP99Ms} ms; handshakes p50 ${result.handshakeP50Ms} ms, p99 ${result.handshakeP99Ms} ms), ${result.failedAttempts} failed attempts, ${result.gaveUp} gave up; failures by cause: ${JSON.stringify(result.errors)}`,
    );
    log(
      `storm: requests served, collect ${JSON.stringify(collectServed)}; dispatch ${JSON.stringify(dispatchServed)}`,
    );
    log(
      `storm: CPU from the kill to the last delivery (% of a core): ${usage.map((r) => `${r.name} ${r.cpuPercent}`).join(', ')}; other processes of the box ${backgroundPct}`,
    );
    log(
      `storm: per second after the kill, sockets lost/handshakes begun/opened (of users reopened): ${timeline(killedAt, statuses)}`,
    );
    await Promise.all(workers.map((w) => w.request('close')));
    return result;
  } finally {
    unregister();
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** Percentiles of the successful /v1/connect calls and handshakes over every worker. */
function timings(
  statuses: StormStatus[],
): Pick<StormResult, 'askP50Ms' | 'askP99Ms' | 'handshakeP50Ms' | 'handshakeP99Ms'> {
  const of = (pick: (s: StormStatus) => Float64Array) => {
    const all = statuses.flatMap((s) => [...pick(s)].filter((x) => !Number.isNaN(x)));
    all.sort((a, b) => a - b);
    const at = (q: number) => round(all[Math.floor(q * (all.length - 1))] ?? NaN);
    return { p50: at(0.5), p99: at(0.99) };
  };
  const ask = of((s) => s.askMs);
  const handshake = of((s) => s.handshakeMs);
  return {
    askP50Ms: ask.p50,
    askP99Ms: ask.p99,
    handshakeP50Ms: handshake.p50,
    handshakeP99Ms: handshake.p99,
  };
}

/** after − before, per key, leaving out keys that did not move. */
function difference(
  after: Record<string, number>,
  before: Record<string, number>,
): Record<string, number> {
  const moved: Record<string, number> = {};
  for (const [k, v] of Object.entries(after))
    if (v !== (before[k] ?? 0)) moved[k] = v - (before[k] ?? 0);
  return moved;
}

/** Per second after the kill, "second:lost/begun/opened": the sockets that closed (the
 *  clients saw the kill), the successful handshakes begun (after a /v1/connect answer or a
 *  fallback pick) and the sockets opened in it. */
function timeline(killedAt: number, statuses: StormStatus[]): string {
  const lost: number[] = [];
  const begun: number[] = [];
  const opened: number[] = [];
  const count = (into: number[], at: number): void => {
    const second = Math.floor((at - killedAt) / 1000);
    if (second >= 0) into[second] = (into[second] ?? 0) + 1;
  };
  for (const s of statuses) {
    for (const at of s.lostAt) if (Number.isFinite(at)) count(lost, at);
    s.reopenedAt.forEach((openedAt, i) => {
      if (!Number.isFinite(openedAt)) return;
      count(opened, openedAt);
      count(begun, openedAt - (s.handshakeMs[i] as number));
    });
  }
  const seconds = Math.max(lost.length, begun.length, opened.length);
  return Array.from(
    { length: seconds },
    (_, i) => `${i}:${lost[i] ?? 0}/${begun[i] ?? 0}/${opened[i] ?? 0}`,
  ).join(' ');
}
