// Connection capacity: idle, authenticated connections of distinct users spread over the
// push nodes and opened by client worker processes, with the connect rate, where the CPU
// went while they connected, and each node's RSS per connection.
//
// One process here may hold at most 20,000 open files (a hard limit), so the target is split
// evenly over `capacityNodes` push nodes (each capped at its open-files limit − 1,000) and
// over client workers of at most `perCapacityWorker` sockets each.
import { wsUrlOf } from '../../test/support/clients.js';
import type { ServiceProc, TestCluster } from '../../test/support/cluster.js';
import { ClientPool, clusterProcs, holdByBench, log, sleep } from '../lib/harness.js';
import { cpuRow, idleFootprint, metric, openFiles, waitPushEmpty } from '../lib/probes.js';
import type { Results } from '../lib/report.js';
import { cpuWindow, machineWindow, round, rssBytes } from '../stats.js';

export interface CapacityParams {
  /** connections in all, over every push node */
  capacityTarget: number;
  /** push nodes the connections are spread over: more are started if the cluster has fewer */
  capacityNodes: number;
  /** connections per client worker */
  perCapacityWorker: number;
  /** handshakes in flight per client worker */
  capacityConcurrency: number;
  capacityDeadlineMs: number;
  /** wait after the 3 s reading before the nodes' RSS and heap are read again (the figures) */
  capacitySettleMs: number;
  /** how long the nodes' idle CPU with every connection open is measured */
  capacityIdleMs: number;
}

type NodeResult = NonNullable<Results['connections']['nodes']>[number];

/** The cluster's first `n` push nodes, starting more (registered and passing) if needed. */
async function pushNodes(cluster: TestCluster, n: number): Promise<ServiceProc[]> {
  while (cluster.push.length < n) {
    const node = await cluster.spawn('push');
    cluster.push.push(node);
    log(`connections: started push :${node.port} (${cluster.push.length} of ${n})`);
  }
  return cluster.push.slice(0, n);
}

interface NodeReading {
  rss: number;
  heap: number;
}

/** Each node's reading, one node after another: a forced full GC stops a node's event loop
 *  (a production node's GC runs incrementally), and three at once on two cores held them
 *  past their health checks' timeout (bench of 2026-11-21: all three critical at once). */
async function readNodes(nodes: readonly ServiceProc[]): Promise<NodeReading[]> {
  const readings: NodeReading[] = [];
  for (const node of nodes) readings.push(await readNode(node));
  return readings;
}

/** The node's RSS and V8 heap in use after a full GC: the cluster must have been started
 *  with GC_HOOK_ENV (bench/gc-hook.mjs), or SIGUSR2 would end the node. */
async function readNode(node: ServiceProc): Promise<NodeReading> {
  holdByBench(node.port, 1000);
  node.child.kill('SIGUSR2');
  await sleep(1000);
  return {
    rss: await rssBytes(node.child.pid as number),
    heap: await metric(node.url, 'nodejs_heap_size_used_bytes'),
  };
}

export async function capacityTest(
  cluster: TestCluster,
  P: CapacityParams,
): Promise<Results['connections']> {
  const nodes = await pushNodes(cluster, P.capacityNodes);
  const fdLimits = await Promise.all(nodes.map((n) => openFiles(n.child.pid as number)));
  // Each node also needs descriptors for Redis, Consul, auth, collect and its listener.
  const perNode = fdLimits.map((limit) =>
    Math.min(
      Math.ceil(P.capacityTarget / nodes.length),
      Number.isFinite(limit) ? limit - 1000 : Infinity,
    ),
  );
  const attempted = Math.min(
    P.capacityTarget,
    perNode.reduce((a, b) => a + b, 0),
  );
  for (const node of nodes) await waitPushEmpty(cluster, node.port);
  await sleep(2000);
  const before = await readNodes(nodes);

  // Users dealt round-robin over the nodes (each node at most its share); the pool deals
  // them round-robin over its workers in turn.
  const specs: { user: string; url: string }[] = [];
  const placed = nodes.map(() => 0);
  for (let i = 0; specs.length < attempted; i++) {
    const k = i % nodes.length;
    if ((placed[k] as number) >= (perNode[k] as number)) continue;
    placed[k] = (placed[k] as number) + 1;
    specs.push({ user: `idle-${specs.length}`, url: wsUrlOf(cluster, k) });
  }
  const workers = Math.max(2, Math.ceil(attempted / P.perCapacityWorker));
  const pool = await ClientPool.start('capacity', workers);
  log(
    `connections: opening ${attempted} authenticated connections to push ${nodes.map((n, k) => `:${n.port} (${placed[k]})`).join(', ')} from ${workers} workers (target ${P.capacityTarget}, node fd limits ${fdLimits.join(', ')})`,
  );
  await pool.sign(specs);
  // Where the CPU goes while they connect: every service (the token check crosses auth,
  // the binding Redis, the replay collect) and the client workers.
  const cpu = await cpuWindow([
    ...clusterProcs(cluster),
    ...pool.workers.map((w, i) => ({ name: `harness: clients ${i + 1}`, pid: w.pid })),
  ]);
  const box = await machineWindow();
  const conn = await pool.connect('cluster', specs, {
    concurrency: P.capacityConcurrency,
    deadlineMs: P.capacityDeadlineMs,
    sign: true,
    // Bare-socket clients: a `ws` client's own CPU per connect was as much as the three
    // nodes' together on this box (see lib/lean-websocket.ts).
    lean: true,
  });
  const connectCpu = (await cpu.end()).map((u) => ({
    ...cpuRow(u),
    // CPU time per connection opened: unlike the rate, it holds on a box shared with others.
    cpuMsPerConn: round((u.cpuPercent / 100) * (conn.ms / Math.max(1, conn.opened)), 3),
  }));
  const { backgroundPct } = await box.end();
  log(
    `connections: ${conn.opened} opened in ${Math.round(conn.ms)} ms = ${Math.round(conn.perSecond)}/s (${conn.failed} failed, ${conn.retried} attempts retried${conn.firstError ? `; first error: ${conn.firstError}` : ''})`,
  );
  log(
    `connections: CPU while connecting (% of a core): ${connectCpu.map((r) => `${r.name} ${r.cpuPercent}% = ${r.cpuMsPerConn} ms/conn`).join(', ')}; other processes of the box ${backgroundPct}`,
  );
  // Each reading follows a full GC; the one 3 s after the last open is kept beside the
  // settled one, as pages V8 freed may reach the OS only later.
  await sleep(3000);
  const early = await readNodes(nodes);
  await sleep(P.capacitySettleMs);
  const after = await readNodes(nodes);
  const counts = await Promise.all(nodes.map((n) => metric(n.url, 'push_connections')));
  const idleWith = await idleFootprint(
    nodes.map((n) => ({ name: `push :${n.port}`, pid: n.child.pid as number })),
    P.capacityIdleMs,
  );
  const { open } = await pool.counts();
  // The clients all close at once, and each node answers 16,667 close handshakes in a burst
  // (a bare ws server held its loop 487 ms for 15,000 on a quiet box): the bench's doing.
  for (const node of nodes) holdByBench(node.port, 3000);
  await pool.close();
  await pool.stop();

  const perNodeResults: NodeResult[] = nodes.map((node, k) => {
    const b = before[k] as NodeReading;
    const e = early[k] as NodeReading;
    const a = after[k] as NodeReading;
    const count = counts[k] as number;
    const held = Math.max(1, count);
    const r: NodeResult = {
      port: node.port,
      attempted: placed[k] as number,
      count,
      fdLimit: fdLimits[k] as number,
      rssBytesBefore: b.rss,
      rssBytesAfter: a.rss,
      rssBytesPerConn: Math.round((a.rss - b.rss) / held),
      heapBytesPerConn: Math.round((a.heap - b.heap) / held),
      /** the same, 3 s after the last open */
      rssBytesPerConnEarly: Math.round((e.rss - b.rss) / held),
      heapBytesPerConnEarly: Math.round((e.heap - b.heap) / held),
      idleCpuPercent: idleWith[k]?.cpuPercent ?? NaN,
    };
    log(
      `connections: push :${r.port} holds ${r.count}; RSS ${(b.rss / 2 ** 20).toFixed(1)} → ${(a.rss / 2 ** 20).toFixed(1)} MiB = ${r.rssBytesPerConn} B per connection (V8 heap ${r.heapBytesPerConn} B; 3 s after the last open: ${r.rssBytesPerConnEarly} B, heap ${r.heapBytesPerConnEarly} B)`,
    );
    return r;
  });
  const sum = (f: (r: NodeResult) => number): number =>
    perNodeResults.reduce((s, r) => s + f(r), 0);
  const held = Math.max(
    1,
    sum((r) => r.count),
  );
  const rssBytesPerConn = Math.round(sum((r) => r.rssBytesAfter - r.rssBytesBefore) / held);
  log(
    `connections: ${open} still open at the end; ${rssBytesPerConn} B RSS per connection overall`,
  );
  return {
    count: conn.opened,
    target: P.capacityTarget,
    attempted,
    pushNodes: nodes.length,
    clientWorkers: workers,
    failed: conn.failed,
    retried: conn.retried,
    firstError: conn.firstError,
    stillOpen: open,
    nodeReported: sum((r) => r.count),
    connectPerSec: Math.round(conn.perSecond),
    connectMs: Math.round(conn.ms),
    connectCpu,
    connectBackgroundPct: backgroundPct,
    rssBytesBefore: sum((r) => r.rssBytesBefore),
    rssBytesAfter: sum((r) => r.rssBytesAfter),
    rssBytesPerConn,
    /** V8 heap in use (from the nodes' /metrics) after − before, per connection */
    heapBytesPerConn: Math.round(
      nodes.reduce(
        (s, _, k) => s + ((after[k] as NodeReading).heap - (before[k] as NodeReading).heap),
        0,
      ) / held,
    ),
    nodeFdLimit: Math.min(...fdLimits),
    idleCpuPercent: sum((r) => r.idleCpuPercent),
    nodes: perNodeResults,
  };
}
