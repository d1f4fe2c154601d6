// Connection capacity: idle, authenticated connections of distinct users opened by client
// worker processes, with the connect rate and the push node's RSS per connection.
import { wsUrlOf } from '../../test/support/clients.js';
import type { TestCluster } from '../../test/support/cluster.js';
import { ClientPool, log, sleep } from '../lib/harness.js';
import { idleFootprint, metric, openFiles, pushConnections, waitPushEmpty } from '../lib/probes.js';
import type { Results } from '../lib/report.js';
import { rssBytes } from '../stats.js';

export interface CapacityParams {
  capacityTarget: number;
  /** connections per client worker */
  perCapacityWorker: number;
  /** handshakes in flight per client worker */
  capacityConcurrency: number;
  capacityDeadlineMs: number;
  /** how long the node's idle CPU with every connection open is measured */
  idleMs: number;
}

export async function capacityTest(
  cluster: TestCluster,
  P: CapacityParams,
): Promise<Results['connections']> {
  const node = cluster.push[0] as TestCluster['push'][number];
  const pid = node.child.pid as number;
  const fdLimit = await openFiles(pid);
  // The node also needs descriptors for Redis, Consul, auth, collect and its listener.
  const target = Math.min(P.capacityTarget, Number.isFinite(fdLimit) ? fdLimit - 1000 : Infinity);
  await waitPushEmpty(cluster, node.port);
  await sleep(2000);
  const rssBefore = await rssBytes(pid);
  const heapBefore = await metric(node.url, 'nodejs_heap_size_used_bytes');
  const workers = Math.max(2, Math.ceil(target / P.perCapacityWorker));
  const pool = await ClientPool.start('capacity', workers);
  const specs = Array.from({ length: target }, (_, i) => ({
    user: `idle-${i}`,
    url: wsUrlOf(cluster, 0),
  }));
  log(
    `connections: opening ${target} authenticated connections to push :${node.port} from ${workers} workers (target ${P.capacityTarget}, node fd limit ${fdLimit})`,
  );
  const conn = await pool.connect('cluster', specs, {
    concurrency: P.capacityConcurrency,
    deadlineMs: P.capacityDeadlineMs,
    sign: true,
  });
  log(
    `connections: ${conn.opened} opened in ${Math.round(conn.ms)} ms = ${Math.round(conn.perSecond)}/s (${conn.failed} failed, ${conn.retried} attempts retried${conn.firstError ? `; first error: ${conn.firstError}` : ''})`,
  );
  await sleep(3000);
  const rssAfter = await rssBytes(pid);
  const heapAfter = await metric(node.url, 'nodejs_heap_size_used_bytes');
  const idleWith = await idleFootprint([{ name: `push :${node.port}`, pid }], P.idleMs);
  const { open } = await pool.counts();
  const reported = await pushConnections(cluster, node.port);
  await pool.close();
  await pool.stop();
  const perConn = (rssAfter - rssBefore) / Math.max(1, conn.opened);
  log(
    `connections: ${open} still open; node RSS ${(rssBefore / 2 ** 20).toFixed(1)} → ${(rssAfter / 2 ** 20).toFixed(1)} MiB = ${(perConn / 1024).toFixed(1)} KiB per connection`,
  );
  return {
    count: conn.opened,
    target: P.capacityTarget,
    attempted: target,
    failed: conn.failed,
    retried: conn.retried,
    firstError: conn.firstError,
    stillOpen: open,
    nodeReported: reported,
    connectPerSec: Math.round(conn.perSecond),
    connectMs: Math.round(conn.ms),
    rssBytesBefore: rssBefore,
    rssBytesAfter: rssAfter,
    rssBytesPerConn: Math.round(perConn),
    /** V8 heap in use (from the node's /metrics) after − before, per connection */
    heapBytesPerConn: Math.round((heapAfter - heapBefore) / Math.max(1, conn.opened)),
    nodeFdLimit: fdLimit,
    idleCpuPercent: idleWith[0]?.cpuPercent ?? NaN,
  };
}
