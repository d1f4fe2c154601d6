import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { LoadGenerator, Population, settle } from '../support/load.js';

// Small-scale runs of the chaos suite's faults 1, 2, 5 and 6 (npm run chaos runs all eight).
const USERS = Array.from({ length: 8 }, (_, i) => `user-${i}`);
const RATE = 40;
const SETTLE_MS = 20_000;

let cluster: TestCluster | undefined;
let population: Population | undefined;
const dirs: string[] = [];

afterEach(async () => {
  population?.stop();
  await cluster?.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  cluster = population = undefined;
});

async function run(
  fault: (c: TestCluster, gen: LoadGenerator) => Promise<void>,
  env: Record<string, string> = {},
): Promise<{ lost: number; sent: number; lostIds: string[] }> {
  cluster = await startCluster({ pushNodes: 2, env: { ACK_TIMEOUT: '2s', ...env } });
  const c = cluster;
  population = new Population(c, USERS);
  await population.start();
  const gen = new LoadGenerator(() => c.collect.url, USERS, RATE, RATE * 30);
  gen.start();
  await waitFor('some messages accepted before the fault', () => gen.sent.length >= RATE / 2, 5000);
  await fault(c, gen);
  const before = gen.sent.length;
  await waitFor(
    'messages accepted after the fault',
    () => gen.sent.length >= before + RATE,
    15_000,
  );
  await gen.stop();
  const outcome = await settle(population, gen, SETTLE_MS);
  return outcome;
}

describe('no message accepted with 202 is lost when', () => {
  it('one of two push nodes is SIGKILLed: its clients reconnect to the other', async () => {
    const outcome = await run(async (c) => {
      const victim = c.push[0]!;
      victim.child.kill('SIGKILL');
      await waitFor(
        'every client reconnected',
        () => population!.onNode(victim.port) === 0,
        10_000,
      );
      await population!.waitAllOpen(10_000);
    });
    expect(outcome.lostIds).toEqual([]);
    expect(outcome.sent).toBeGreaterThan(RATE);
  });

  it('one push node is stopped gracefully with SIGTERM', async () => {
    const outcome = await run(async (c) => {
      const victim = c.push[0]!;
      await victim.child.stop(12_000);
      expect(victim.child.proc.exitCode).toBe(0);
      await population!.waitAllOpen(10_000);
      expect(population!.onNode(victim.port)).toBe(0);
    });
    expect(outcome.lostIds).toEqual([]);
  });

  it('collect is SIGKILLed right after a 202 and restarted (SQLite store in a file)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'push-cluster-sqlite-'));
    dirs.push(dir);
    const outcome = await run(
      async (c, gen) => {
        const accepted = gen.sent.length;
        await waitFor('one more 202', () => gen.sent.length > accepted, 5000, 1);
        c.collect.child.kill('SIGKILL');
        await c.collect.child.waitExit();
        await c.restart(c.collect);
      },
      { SQLITE_PATH: join(dir, 'messages.sqlite') },
    );
    expect(outcome.lostIds).toEqual([]);
  });

  it('Redis restarts and every route is lost: nodes rebuild them', async () => {
    const outcome = await run(async (c) => {
      await c.deps.redis.restart();
    });
    expect(outcome.lostIds).toEqual([]);
    expect(population!.clients.every((x) => x.client.connectionState === 'open')).toBe(true);
  });
});
