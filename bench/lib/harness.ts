// Shared plumbing of the benchmark: logging, cleanup of every process it starts, the client
// pool (client worker processes) and helpers around a push-cluster test cluster.
import { generateKeyPairSync } from 'node:crypto';
import { DEV_SECRETS } from '../../src/core/config.js';
import { KEYS, startCluster, type TestCluster } from '../../test/support/cluster.js';
import type { ClientKind, ClientSpec, ConnectResult } from '../workers/clients.js';
import { BENCH_DIR, killAllWorkers, Worker } from './ipc.js';
import type { SignOptions } from './tokens.js';

export const t0 = performance.now();
export const now = (): number => performance.timeOrigin + performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export function log(msg: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${msg}\n`);
}

// ---- client tokens: how the bench's clusters sign and check them ----------------------

export type TokenAlgorithm = 'RS256' | 'ES256' | 'HS256';

/**
 * RS256 (the default) or ES256 (`--jwt ES256`): auth signs with a key pair made for this run
 * and push nodes check tokens with its published public key. An RS256 check costs about
 * 37 µs and an ES256 one 85 µs on this machine (a signature, made once per token by auth,
 * 288 µs and 38 µs): with a check on every connect, RS256 is the cheaper for a push cluster.
 * HS256 (`--jwt HS256`): the development secret, and push nodes ask auth for every token.
 */
let tokenAlgorithm: TokenAlgorithm = 'RS256';
const pems = new Map<'RS256' | 'ES256', { privateKey: string; publicKey: string }>();
/** The run's key pair for an algorithm, made on first use. */
function keyPair(algorithm: 'RS256' | 'ES256'): { privateKey: string; publicKey: string } {
  let pair = pems.get(algorithm);
  if (!pair) {
    const made =
      algorithm === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    pair = {
      privateKey: made.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      publicKey: made.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    };
    pems.set(algorithm, pair);
  }
  return pair;
}

export function useTokenAlgorithm(algorithm: TokenAlgorithm): void {
  tokenAlgorithm = algorithm;
}

/** What the bench's clients sign their tokens with, exactly as auth would. */
export function signOptions(): SignOptions {
  const algorithm = tokenAlgorithm;
  return {
    secret: DEV_SECRETS.JWT_SECRET,
    ...(algorithm === 'HS256' ? {} : { privateKey: keyPair(algorithm).privateKey, algorithm }),
    issuer: 'push-cluster',
    audience: 'push-cluster',
    ttlSeconds: 3600,
  };
}

/** The cluster settings that go with signOptions(). */
function tokenEnv(): Record<string, string> {
  const algorithm = tokenAlgorithm;
  if (algorithm === 'HS256') return { JWT_ALGORITHM: 'HS256' };
  const { privateKey, publicKey } = keyPair(algorithm);
  return { JWT_ALGORITHM: algorithm, JWT_PRIVATE_KEY: privateKey, JWT_PUBLIC_KEY: publicKey };
}

// ---- cleanup: every process we start is stopped, on success, error or Ctrl-C -------------

const cleanups: { name: string; run: () => Promise<void> }[] = [];
/** Synchronous last-resort kills (process 'exit'): pids of non-worker children. */
export const exitKills = new Set<() => void>();

export function onCleanup(name: string, run: () => Promise<void>): () => void {
  const entry = { name, run };
  cleanups.push(entry);
  return () => {
    const i = cleanups.indexOf(entry);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

export async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop() as (typeof cleanups)[number];
    try {
      await Promise.race([c.run(), sleep(20_000)]);
    } catch (err) {
      log(`cleanup of ${c.name} failed: ${(err as Error).message}`);
    }
  }
  killAllWorkers();
}

export let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping every process`);
    void cleanupAll().finally(() => process.exit(130));
  });
}
process.on('exit', () => {
  killAllWorkers();
  for (const k of exitKills) k();
});

// ---- clients ----------------------------------------------------------------------------------

/** Client workers: many sockets each, reporting unique deliveries as they come. */
export class ClientPool {
  private readonly delivered = new Map<Worker, number>();
  /** While a saturation runs: where the running total goes (the load generator). */
  forward: ((n: number) => void) | undefined;

  private constructor(readonly workers: Worker[]) {
    for (const w of workers) {
      this.delivered.set(w, 0);
      w.on('progress', (d) => {
        this.delivered.set(w, (d as { delivered: number }).delivered);
        this.forward?.(this.total);
      });
    }
  }

  static async start(label: string, n: number): Promise<ClientPool> {
    const workers = await Promise.all(
      Array.from({ length: n }, (_, i) => Worker.start(`${label}-clients-${i}`, 'clients')),
    );
    const pool = new ClientPool(workers);
    pool.unregister = onCleanup(`${label} clients`, () => pool.stop());
    return pool;
  }

  private unregister: () => void = () => undefined;

  get total(): number {
    let sum = 0;
    for (const v of this.delivered.values()) sum += v;
    return sum;
  }

  /** Has each worker sign the tokens of the clients `connect` will deal it (the same
   *  round-robin), before anything is timed: tokens are issued before clients connect. */
  async sign(clients: readonly ClientSpec[]): Promise<void> {
    await Promise.all(
      this.workers.map((w, wi) =>
        w.request(
          'sign',
          {
            users: clients.filter((_, i) => i % this.workers.length === wi).map((c) => c.user),
            sign: signOptions(),
          },
          120_000,
        ),
      ),
    );
  }

  /**
   * Connects `clients`, dealt round-robin to the workers; worker w binds its sockets to
   * loopback source addresses 127.0.0.<10 + 4w .. 13 + 4w>.
   */
  async connect(
    kind: ClientKind,
    clients: ClientSpec[],
    o: { concurrency?: number; deadlineMs?: number; sign?: boolean; lean?: boolean } = {},
  ): Promise<{
    opened: number;
    failed: number;
    retried: number;
    firstError?: string;
    perSecond: number;
    ms: number;
  }> {
    const shares = this.workers.map((_, w) =>
      clients.filter((__, i) => i % this.workers.length === w),
    );
    const results = await Promise.all(
      this.workers.map((w, wi) =>
        w.request<ConnectResult>(
          'connect',
          {
            kind,
            clients: shares[wi],
            localAddresses: [0, 1, 2, 3].map((k) => `127.0.0.${10 + 4 * wi + k}`),
            concurrency: o.concurrency ?? 32,
            deadlineMs: o.deadlineMs ?? 60_000,
            sign: o.sign ? signOptions() : undefined,
            lean: o.lean,
          },
          (o.deadlineMs ?? 60_000) + 60_000,
        ),
      ),
    );
    const opened = results.reduce((s, r) => s + r.opened, 0);
    const failed = results.reduce((s, r) => s + r.failed, 0);
    const retried = results.reduce((s, r) => s + r.retried, 0);
    const start = Math.min(...results.map((r) => r.startedAt));
    const end = Math.max(...results.map((r) => r.lastOpenAt));
    const ms = end - start;
    return {
      opened,
      failed,
      retried,
      firstError: results.find((r) => r.firstError)?.firstError,
      perSecond: ms > 0 ? (opened / ms) * 1000 : NaN,
      ms,
    };
  }

  async reset(record: boolean): Promise<void> {
    await Promise.all(this.workers.map((w) => w.request('reset', { record })));
    for (const w of this.workers) this.delivered.set(w, 0);
  }

  /** Exact counts now, asking every worker. */
  async counts(): Promise<{ delivered: number; duplicates: number; open: number; at: number }> {
    const before = now();
    const all = await Promise.all(
      this.workers.map((w) =>
        w.request<{ delivered: number; duplicates: number; open: number }>('counts'),
      ),
    );
    const at = (before + now()) / 2;
    return {
      delivered: all.reduce((s, c) => s + c.delivered, 0),
      duplicates: all.reduce((s, c) => s + c.duplicates, 0),
      open: all.reduce((s, c) => s + c.open, 0),
      at,
    };
  }

  /** Latencies of the messages sent in [from, to]; `ingest`: only send → createdAt. */
  async latencies(from: number, to: number, ingest = false): Promise<Float64Array> {
    const parts = await Promise.all(
      this.workers.map((w) => w.request<Float64Array>('latencies', { from, to, ingest })),
    );
    const out = new Float64Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  async fanoutArrivals(tag: string): Promise<number[]> {
    const parts = await Promise.all(
      this.workers.map((w) => w.request<Float64Array>('fanout', { tag })),
    );
    return parts.flatMap((p) => [...p]);
  }

  /** Waits until `sent` unique messages arrived, or nothing moved for 5 s, or the timeout. */
  async drain(sent: number, timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    let lastMove = Date.now();
    for (;;) {
      const { delivered } = await this.counts();
      if (delivered >= sent) return delivered;
      if (delivered !== last) {
        last = delivered;
        lastMove = Date.now();
      }
      if (Date.now() > deadline || Date.now() - lastMove > 5000) return delivered;
      await sleep(50);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.request('close', {}, 60_000)));
  }

  async stop(): Promise<void> {
    this.unregister();
    await Promise.all(this.workers.map((w) => w.stop()));
  }
}

export function clusterProcs(cluster: TestCluster): { name: string; pid: number }[] {
  return [
    ...cluster.all().map((p) => ({
      name: p.service === 'push' ? `push :${p.port}` : p.service,
      pid: p.child.pid as number,
    })),
    { name: 'consul', pid: cluster.deps.consul.child.pid as number },
    { name: 'redis-server', pid: cluster.deps.redis.child.pid as number },
  ];
}

/** Services started with this run a full GC on SIGUSR2 (bench/gc-hook.mjs). */
export const GC_HOOK_ENV = { NODE_OPTIONS: `--import ${BENCH_DIR}gc-hook.mjs` };

export async function startBenchCluster(
  env: Record<string, string> = {},
  pushNodes = 2,
): Promise<TestCluster> {
  const cluster = await startCluster({ pushNodes, env: { ...tokenEnv(), ...env } });
  const killAll = (): void => {
    for (const p of cluster.all()) p.child.kill('SIGKILL');
    cluster.deps.consul.child.kill('SIGKILL');
    cluster.deps.redis.child.kill('SIGKILL');
  };
  exitKills.add(killAll);
  const unregister = onCleanup('cluster', () => cluster.stop());
  const stop = cluster.stop.bind(cluster);
  cluster.stop = async () => {
    unregister();
    await stop();
    exitKills.delete(killAll);
  };
  return cluster;
}

/** Until when (performance.now() ms), by port, the bench itself holds a service's event loop
 *  past its health check's timeout, in ways no measured load does:
 *  - a forced full GC before a heap reading takes a push node holding 16,667 sockets 0.8 to
 *    1.5 s on this box (a production node's GC runs incrementally and never does that);
 *  - the capacity scenario's 50,000 clients all close at once when it ends. */
const heldByBench = new Map<number, number>();

/** Says that the bench holds the service on `port` for about `ms`. */
export function holdByBench(port: number, ms: number): void {
  heldByBench.set(port, performance.now() + ms);
}

/** A health change within this long of a hold is the hold's doing (the check that timed out
 *  was sent during it, and its result shows up to a check interval and a poll later). */
const HOLD_GRACE_MS = 2500;

function heldNow(serviceId: string): boolean {
  const port = Number(/-(\d+)$/.exec(serviceId)?.[1]);
  const until = heldByBench.get(port);
  return until !== undefined && performance.now() <= until + HOLD_GRACE_MS;
}

export interface HealthChanges {
  /** Changes under load: flaps. */
  changes: string[];
  /** Changes while the bench itself held the service (holdByBench): not flaps. */
  byBench: string[];
}

/**
 * Watches Consul for checks that are not passing while the cluster is measured: a node that
 * drops out of routing under load explains refused connections or lost messages.
 */
export function watchHealth(cluster: TestCluster): { stop(): HealthChanges } {
  const seen: string[] = [];
  const byBench: string[] = [];
  /** Services that went critical during a hold: their return to passing is the hold's too. */
  const heldDown = new Set<string>();
  const last = new Map<string, string>();
  /** Instances seen passing once: a new instance's checks start critical until they first
   *  pass, which is its start, not a flap. */
  const started = new Set<string>();
  let stopped = false;
  void (async () => {
    while (!stopped) {
      try {
        const res = await fetch(`http://${cluster.deps.consul.addr}/v1/health/state/any`, {
          signal: AbortSignal.timeout(2000),
        });
        const checks = (await res.json()) as {
          ServiceID: string;
          Status: string;
          Output: string;
        }[];
        for (const c of checks) {
          if (!c.ServiceID) continue;
          const prev = last.get(c.ServiceID);
          if (prev !== undefined && prev !== c.Status && started.has(c.ServiceID)) {
            const line = `${((performance.now() - t0) / 1000).toFixed(1)}s ${c.ServiceID}: ${prev} → ${c.Status}${c.Status === 'passing' ? '' : ` (${c.Output.trim().slice(0, 200)})`}`;
            const held = heldNow(c.ServiceID) || heldDown.has(c.ServiceID);
            if (held && c.Status !== 'passing') heldDown.add(c.ServiceID);
            else heldDown.delete(c.ServiceID);
            (held ? byBench : seen).push(line);
            log(`health: ${line}${held ? " (the bench's own hold, not a flap)" : ''}`);
          }
          last.set(c.ServiceID, c.Status);
          if (c.Status === 'passing') started.add(c.ServiceID);
        }
      } catch {
        // Consul busy: next round
      }
      await sleep(250);
    }
  })();
  return {
    stop() {
      stopped = true;
      return { changes: seen, byBench };
    },
  };
}

export async function mintTokens(cluster: TestCluster, users: string[]): Promise<string[]> {
  const tokens: string[] = new Array<string>(users.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < users.length) {
        const i = next++;
        const res = await fetch(`${cluster.auth.url}/v1/tokens`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${KEYS.AUTH_ADMIN_KEY}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ userId: users[i], ttlSeconds: 3600 }),
        });
        if (res.status !== 201) throw new Error(`token for ${users[i]}: ${res.status}`);
        tokens[i] = ((await res.json()) as { token: string }).token;
      }
    }),
  );
  return tokens;
}
