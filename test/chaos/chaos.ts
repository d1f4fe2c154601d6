// npm run chaos: the fault suite. A real cluster (Consul, Redis, auth, collect, two
// dispatch, two push nodes), a population of clients built on the client library and a
// steady load; each fault below in turn, then a table. Exits 1 if any message is lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { waitFor } from '../../src/launcher/child.js';
import { startCluster, type ServiceProc, type TestCluster } from '../support/cluster.js';
import { mintToken } from '../support/clients.js';
import { LoadGenerator, Population, settle } from '../support/load.js';

const quick = process.argv.includes('--quick');
const USERS = Array.from({ length: quick ? 20 : 100 }, (_, i) => `chaos-user-${i}`);
const RATE = quick ? 50 : 200;
const SETTLE_MS = 30_000;

interface Row {
  fault: string;
  detectedMs: number | undefined;
  recoveredMs: number | undefined;
  sent: number;
  delivered: number;
  duplicates: number;
  lost: number;
  note: string;
}

const passingIds = async (c: TestCluster, service: string): Promise<Set<string>> => {
  const res = await fetch(`http://${c.deps.consul.addr}/v1/health/service/${service}?passing=true`);
  return new Set(((await res.json()) as { Service: { ID: string } }[]).map((e) => e.Service.ID));
};

const since = (t0: number): number => performance.now() - t0;

async function timeUntil(
  probe: () => Promise<boolean> | boolean,
  timeoutMs: number,
  t0: number,
): Promise<number | undefined> {
  try {
    await waitFor('condition', probe, timeoutMs, 20);
    return since(t0);
  } catch {
    return undefined;
  }
}

/** Time until the instance has left the passing set in Consul. */
const untilEvicted = (
  c: TestCluster,
  service: string,
  id: string,
  t0: number,
): Promise<number | undefined> =>
  timeUntil(async () => !(await passingIds(c, service)).has(id), 15_000, t0);

/** Time until no client is left on the node and every client is connected again. */
const untilClientsMoved = (
  pop: Population,
  port: number,
  t0: number,
): Promise<number | undefined> =>
  timeUntil(() => pop.onNode(port) === 0 && allOpen(pop), 20_000, t0);

/** Can a brand-new client connect right now? Returns the HTTP status of the upgrade (101 on success). */
async function tryConnect(c: TestCluster, token: string): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(
      `ws://127.0.0.1:${c.push[1]!.port}/ws?token=${encodeURIComponent(token)}`,
    );
    ws.once('open', () => {
      ws.close();
      resolve(101);
    });
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(0));
  });
}

interface Fault {
  name: string;
  note?: string;
  /** Injects the fault; returns detection and recovery times (ms since injection). */
  inject(
    c: TestCluster,
    pop: Population,
  ): Promise<{ detectedMs?: number; recoveredMs?: number; note?: string }>;
}

const faults: Fault[] = [
  {
    name: '1. SIGKILL one of two push nodes',
    async inject(c, pop) {
      const victim = c.push[0]!;
      const t0 = performance.now();
      victim.child.kill('SIGKILL');
      const detectedMs = await untilEvicted(c, 'push', victim.id, t0);
      const recoveredMs = await untilClientsMoved(pop, victim.port, t0);
      await c.restart(victim);
      return { detectedMs, recoveredMs };
    },
  },
  {
    name: '2. SIGTERM one push node (graceful)',
    async inject(c, pop) {
      const victim = c.push[0]!;
      const t0 = performance.now();
      const stopped = victim.child.stop(12_000);
      const detectedMs = await untilEvicted(c, 'push', victim.id, t0);
      const recoveredMs = await untilClientsMoved(pop, victim.port, t0);
      await stopped;
      await c.restart(victim);
      return { detectedMs, recoveredMs };
    },
  },
  {
    name: '3. SIGSTOP a push node 15 s, then SIGCONT',
    async inject(c) {
      const victim = c.push[0]!;
      const t0 = performance.now();
      victim.child.kill('SIGSTOP');
      const detectedMs = await untilEvicted(c, 'push', victim.id, t0);
      await new Promise((r) => setTimeout(r, Math.max(0, 15_000 - since(t0))));
      victim.child.kill('SIGCONT');
      const recoveredMs = await timeUntil(
        async () => (await passingIds(c, 'push')).has(victim.id),
        20_000,
        t0,
      );
      return { detectedMs, recoveredMs, note: 'recovered = back in the passing set' };
    },
  },
  {
    name: '4. SIGKILL one of two dispatch instances',
    async inject(c) {
      const victim = c.all().find((p) => p.service === 'dispatch')!;
      const t0 = performance.now();
      victim.child.kill('SIGKILL');
      const detectedMs = await untilEvicted(c, 'dispatch', victim.id, t0);
      await c.restart(victim);
      const recoveredMs = await timeUntil(
        async () => (await passingIds(c, 'dispatch')).size === 2,
        20_000,
        t0,
      );
      return { detectedMs, recoveredMs, note: 'recovered = restarted and passing' };
    },
  },
  {
    name: '5. SIGKILL collect right after a 202, restart',
    async inject(c) {
      const t0 = performance.now();
      c.collect.child.kill('SIGKILL');
      await c.collect.child.waitExit();
      await c.restart(c.collect);
      return { recoveredMs: since(t0), note: 'SQLite store in a file (SQLITE_PATH)' };
    },
  },
  {
    name: '6. restart Redis (every route lost)',
    async inject(c) {
      const t0 = performance.now();
      await c.deps.redis.restart();
      const everyonePassing = async (): Promise<boolean> =>
        (await passingIds(c, 'push')).size === 2 && (await passingIds(c, 'dispatch')).size === 2;
      const recoveredMs = await timeUntil(everyonePassing, 20_000, t0);
      return { recoveredMs, note: 'recovered = all passing again' };
    },
  },
  {
    name: '7. restart the Consul agent',
    async inject(c) {
      const t0 = performance.now();
      await c.deps.consul.restart();
      const all = c.all();
      const recoveredMs = await timeUntil(
        async () => {
          const ids = new Set<string>();
          for (const s of ['auth', 'collect', 'dispatch', 'push'])
            for (const id of await passingIds(c, s)) ids.add(id);
          return all.every((p: ServiceProc) => ids.has(p.id));
        },
        30_000,
        t0,
      );
      return { recoveredMs, note: 'recovered = every instance re-registered and passing' };
    },
  },
  {
    name: '8. auth down for 10 s',
    async inject(c) {
      const token = await mintToken(c, 'late-joiner', 3600);
      const t0 = performance.now();
      c.auth.child.kill('SIGKILL');
      const detectedMs = await timeUntil(
        async () => (await tryConnect(c, `${token}x`)) === 503,
        10_000,
        t0,
      );
      const during = await tryConnect(c, `${token}y`);
      await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - since(t0))));
      await c.restart(c.auth);
      const recoveredMs = await timeUntil(
        async () => (await tryConnect(c, token)) === 101,
        20_000,
        t0,
      );
      return { detectedMs, recoveredMs, note: `new connection while down: HTTP ${during}` };
    },
  },
];

function allOpen(pop: Population): boolean {
  return pop.clients.every((x) => x.client.connectionState === 'open');
}

const fmt = (ms: number | undefined): string =>
  ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`;

async function main(): Promise<void> {
  const storeDir = mkdtempSync(join(tmpdir(), 'push-cluster-chaos-'));
  const rows: Row[] = [];
  try {
    for (const fault of faults) {
      process.stdout.write(`${fault.name} … `);
      const cluster = await startCluster({
        pushNodes: 2,
        env: { ACK_TIMEOUT: '3s', SQLITE_PATH: join(storeDir, `${rows.length}.sqlite`) },
      });
      await cluster.spawn('dispatch');
      const pop = new Population(cluster, USERS);
      try {
        await pop.start();
        const gen = new LoadGenerator(() => cluster.collect.url, USERS, RATE);
        gen.start();
        await new Promise((r) => setTimeout(r, 2000));
        const result = await fault.inject(cluster, pop);
        await new Promise((r) => setTimeout(r, 2000));
        await gen.stop();
        const outcome = await settle(pop, gen, SETTLE_MS);
        rows.push({
          fault: fault.name,
          detectedMs: result.detectedMs,
          recoveredMs: result.recoveredMs,
          ...outcome,
          note: result.note ?? '',
        });
        process.stdout.write(
          `${outcome.lost === 0 ? 'ok' : `LOST ${outcome.lost}: ${outcome.lostIds.join(', ')}`}\n`,
        );
      } finally {
        pop.stop();
        await cluster.stop();
      }
    }
  } finally {
    rmSync(storeDir, { recursive: true, force: true });
  }
  console.log(
    '\n| fault | detected after | recovered after | sent | delivered | duplicates (before dedupe) | lost | note |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.fault} | ${fmt(r.detectedMs)} | ${fmt(r.recoveredMs)} | ${r.sent} | ${r.delivered} | ${r.duplicates} | ${r.lost} | ${r.note} |`,
    );
  }
  const lost = rows.reduce((n, r) => n + r.lost, 0);
  console.log(
    `\n${rows.length} faults, ${lost} messages lost (load ${RATE}/s over ${USERS.length} users).`,
  );
  process.exit(lost === 0 ? 0 : 1);
}

void main();
