// Readings of a running cluster that several scenarios take: a process's open-files limit,
// a push node's connection count as Consul has it, a gauge from a service's /metrics, and
// CPU/RSS of processes over a window.
import { readFile } from 'node:fs/promises';
import { openFilesLimit } from '../../src/push/socket-capacity.js';
import type { TestCluster } from '../../test/support/cluster.js';
import { cpuWindow, round, type ProcUsage } from '../stats.js';
import { log, sleep } from './harness.js';
import type { CpuRow } from './report.js';

export const cpuRow = (u: ProcUsage): CpuRow => ({
  name: u.name,
  cpuPercent: round(u.cpuPercent, 1),
  rssMiB: round(u.rssBytes / 1024 / 1024, 1),
});

/** CPU and RSS of `procs` over `ms`. */
export async function idleFootprint(
  procs: { name: string; pid: number }[],
  ms: number,
): Promise<CpuRow[]> {
  const w = await cpuWindow(procs);
  await sleep(ms);
  return (await w.end()).map(cpuRow);
}

export async function openFiles(pid: number): Promise<number> {
  return openFilesLimit(await readFile(`/proc/${pid}/limits`, 'utf8')) ?? NaN;
}

export async function pushConnections(cluster: TestCluster, port: number): Promise<number> {
  const res = await fetch(`http://${cluster.deps.consul.addr}/v1/catalog/service/push`);
  const nodes = (await res.json()) as {
    ServicePort: number;
    ServiceMeta: { connections?: string };
  }[];
  return Number(nodes.find((n) => n.ServicePort === port)?.ServiceMeta.connections ?? NaN);
}

/** A gauge from the service's /metrics (prom-client), when it has one; NaN otherwise. */
export async function metric(url: string, name: string): Promise<number> {
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return NaN;
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([-\\d.e+]+)$`, 'm').exec(await res.text());
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** HTTP requests a service answered, by route (push_http_requests_total summed over status). */
export async function requestsByRoute(url: string): Promise<Record<string, number>> {
  const byRoute: Record<string, number> = {};
  try {
    const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) });
    for (const line of (await res.text()).split('\n')) {
      if (!line.startsWith('push_http_requests_total{')) continue;
      const route = /route="([^"]*)"/.exec(line)?.[1] ?? '?';
      byRoute[route] = (byRoute[route] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  } catch {
    // unreachable: nothing counted
  }
  return byRoute;
}

export async function waitPushEmpty(cluster: TestCluster, port: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if ((await pushConnections(cluster, port)) === 0) return;
    await sleep(250);
  }
  log(`push :${port} still reports connections after 20 s: measuring anyway`);
}
