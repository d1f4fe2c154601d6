// Rows 1–8: the first faults of the suite, each under the standard harness (a cluster
// of two push nodes and two dispatch, library clients, a steady load).
import WebSocket from 'ws';
import type { ServiceProc, TestCluster } from '../../support/cluster.js';
import { mintToken } from '../../support/clients.js';
import type { Population } from '../../support/load.js';
import {
  passingIds,
  since,
  sleep,
  timeUntil,
  underLoad,
  untilEvicted,
  type Fault,
  type Times,
} from '../common.js';

const passing = (c: TestCluster, service: string): Promise<Set<string>> =>
  passingIds(c.deps.consul.addr, service);

/** Time until no client is left on the node and every client is connected again. */
const untilClientsMoved = (
  pop: Population,
  port: number,
  t0: number,
): Promise<number | undefined> =>
  timeUntil(
    () => pop.onNode(port) === 0 && pop.clients.every((x) => x.client.connectionState === 'open'),
    20_000,
    t0,
  );

/** Can a brand-new client connect right now? The HTTP status of the upgrade (101 on success). */
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

const standard = (
  name: string,
  inject: (c: TestCluster, pop: Population) => Promise<Times>,
): Fault => ({ name, run: ({ sqlitePath }) => underLoad(sqlitePath, inject) });

export const classicFaults: Fault[] = [
  standard('1. SIGKILL one of two push nodes', async (c, pop) => {
    const victim = c.push[0]!;
    const t0 = performance.now();
    victim.child.kill('SIGKILL');
    const detectedMs = await untilEvicted(c, 'push', victim.id, t0);
    const recoveredMs = await untilClientsMoved(pop, victim.port, t0);
    await c.restart(victim);
    return { detectedMs, recoveredMs };
  }),
  standard('2. SIGTERM one push node (graceful)', async (c, pop) => {
    const victim = c.push[0]!;
    const t0 = performance.now();
    const stopped = victim.child.stop(12_000);
    const detectedMs = await untilEvicted(c, 'push', victim.id, t0);
    const recoveredMs = await untilClientsMoved(pop, victim.port, t0);
    await stopped;
    await c.restart(victim);
    return { detectedMs, recoveredMs };
  }),
  standard('3. SIGSTOP a push node 15 s, then SIGCONT', async (c) => {
    const victim = c.push[0]!;
    const t0 = performance.now();
    victim.child.kill('SIGSTOP');
    let detectedMs: number | undefined;
    try {
      detectedMs = await untilEvicted(c, 'push', victim.id, t0);
      await sleep(Math.max(0, 15_000 - since(t0)));
    } finally {
      victim.child.kill('SIGCONT');
    }
    const recoveredMs = await timeUntil(
      async () => (await passing(c, 'push')).has(victim.id),
      20_000,
      t0,
    );
    return { detectedMs, recoveredMs, note: 'recovered = back in the passing set' };
  }),
  standard('4. SIGKILL one of two dispatch instances', async (c) => {
    const victim = c.all().find((p) => p.service === 'dispatch')!;
    const t0 = performance.now();
    victim.child.kill('SIGKILL');
    const detectedMs = await untilEvicted(c, 'dispatch', victim.id, t0);
    await c.restart(victim);
    const recoveredMs = await timeUntil(
      async () => (await passing(c, 'dispatch')).size === 2,
      20_000,
      t0,
    );
    return { detectedMs, recoveredMs, note: 'recovered = restarted and passing' };
  }),
  standard('5. SIGKILL collect right after a 202, restart', async (c) => {
    const t0 = performance.now();
    c.collect.child.kill('SIGKILL');
    await c.collect.child.waitExit();
    await c.restart(c.collect);
    return { recoveredMs: since(t0), note: 'SQLite store in a file (SQLITE_PATH)' };
  }),
  standard('6. restart Redis (every route lost)', async (c) => {
    const t0 = performance.now();
    await c.deps.redis.restart();
    const recoveredMs = await timeUntil(
      async () =>
        (await passing(c, 'push')).size === 2 && (await passing(c, 'dispatch')).size === 2,
      20_000,
      t0,
    );
    return { recoveredMs, note: 'recovered = all passing again' };
  }),
  standard('7. restart the Consul agent', async (c) => {
    const t0 = performance.now();
    await c.deps.consul.restart();
    const all = c.all();
    const recoveredMs = await timeUntil(
      async () => {
        const ids = new Set<string>();
        for (const s of ['auth', 'collect', 'dispatch', 'push'])
          for (const id of await passing(c, s)) ids.add(id);
        return all.every((p: ServiceProc) => ids.has(p.id));
      },
      30_000,
      t0,
    );
    return { recoveredMs, note: 'recovered = every instance re-registered and passing' };
  }),
  standard('8. auth down for 10 s', async (c) => {
    const token = await mintToken(c, 'late-joiner', 3600);
    const t0 = performance.now();
    c.auth.child.kill('SIGKILL');
    const detectedMs = await timeUntil(
      async () => (await tryConnect(c, `${token}x`)) === 503,
      10_000,
      t0,
    );
    const during = await tryConnect(c, `${token}y`);
    await sleep(Math.max(0, 10_000 - since(t0)));
    await c.restart(c.auth);
    const recoveredMs = await timeUntil(
      async () => (await tryConnect(c, token)) === 101,
      20_000,
      t0,
    );
    return { detectedMs, recoveredMs, note: `new connection while down: HTTP ${during}` };
  }),
];
