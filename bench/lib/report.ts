// The shape of bench/results/latest.json, and the Markdown table printed on stdout.
import type { LatencySummary } from '../stats.js';
import { cpuPerMessageMarkdown } from './cpu-per-message.js';

export type SystemName = 'rawWs' | 'socketio' | 'cluster';

export interface CpuRow {
  name: string;
  cpuPercent: number;
  rssMiB: number;
}

export interface SweepPoint extends LatencySummary {
  fraction: number;
  offeredPerSec: number;
  sentPerSec: number;
  sent: number;
  lost: number;
  skipped: number;
  errors: number;
  ingestP50Ms: number;
  ingestP99Ms: number;
  /** CPU % (of one core) used by other processes of the box meanwhile */
  backgroundPct: number;
}

export interface SystemResult {
  label: string;
  clients: number;
  connect: { ms: number; perSecond: number };
  saturation: {
    msgsPerSec: number;
    sent: number;
    delivered: number;
    lost: number;
    errors: number;
    duplicates: number;
    /** CPU (% of one core) and RSS of each process during the measured window */
    cpu: CpuRow[];
    machine: { machinePct: number; benchPct: number; backgroundPct: number };
  };
  halfLoad: SweepPoint | undefined;
  sweep: SweepPoint[];
}

export interface Results {
  mode: 'quick' | 'full';
  startedAt: string;
  durationSeconds: number;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    openFilesLimit: number;
    ephemeralPorts: string;
  };
  params: Record<string, unknown>;
  e2e: { msgsPerSec: number; p50Ms: number; p90Ms: number; p99Ms: number };
  rawWs: { msgsPerSec: number; p50Ms: number; p99Ms: number };
  socketio: { msgsPerSec: number; p50Ms: number; p90Ms: number; p99Ms: number };
  connections: {
    /** connections opened, over every push node */
    count: number;
    target: number;
    attempted: number;
    /** absent from results older than the capacity scenario over several nodes (one node) */
    pushNodes?: number;
    clientWorkers?: number;
    failed: number;
    retried: number;
    firstError: string | undefined;
    stillOpen: number;
    nodeReported: number;
    connectPerSec: number;
    connectMs: number;
    /** CPU (% of one core) of every service and client worker while the connections opened */
    connectCpu?: (CpuRow & { cpuMsPerConn: number })[];
    /** CPU (% of one core) used by processes not ours meanwhile */
    connectBackgroundPct?: number;
    /** summed over the push nodes */
    rssBytesBefore: number;
    rssBytesAfter: number;
    /** (RSS after − before), summed over the nodes, ÷ the connections they hold */
    rssBytesPerConn: number;
    heapBytesPerConn: number;
    /** the lowest of the nodes' open-files limits */
    nodeFdLimit: number;
    /** summed over the nodes */
    idleCpuPercent: number;
    nodes?: {
      port: number;
      attempted: number;
      /** connections the node holds, from its push_connections gauge */
      count: number;
      fdLimit: number;
      rssBytesBefore: number;
      rssBytesAfter: number;
      rssBytesPerConn: number;
      heapBytesPerConn: number;
      /** the same two, 3 s after the last open (before the settle) */
      rssBytesPerConnEarly: number;
      heapBytesPerConnEarly: number;
      idleCpuPercent: number;
    }[];
  };
  fanout: {
    users: number;
    connected: number;
    connectRetried: number;
    lastDeliveryMs: number;
    acceptedMs: number;
    p50Ms: number;
    reached: number;
    runs: {
      lastDeliveryMs: number;
      acceptedMs: number;
      p50Ms: number;
      p99Ms: number;
      reached: number;
    }[];
  };
  idle: { processes: CpuRow[] };
  /** Consul health check transitions seen while push-cluster was measured */
  healthChanges: string[];
  /** Those while the bench itself held a node (its forced GC before a heap reading) */
  healthChangesByBench?: string[];
  systems: Record<SystemName, SystemResult>;
}

const n = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '—');
const f1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '—');
const x = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(3)}×` : '—');
const met = (ok: boolean): string => (ok ? 'met' : 'not met');

function lat(p: SweepPoint | undefined): string {
  return p ? `${f1(p.p50Ms)} / ${f1(p.p90Ms)} / ${f1(p.p99Ms)}` : '—';
}

export function markdownReport(r: Results): string {
  const c = r.systems.cluster;
  const s = r.systems.socketio;
  const w = r.systems.rawWs;
  const vsCeiling = c.saturation.msgsPerSec / w.saturation.msgsPerSec;
  const vsPeer = c.saturation.msgsPerSec / s.saturation.msgsPerSec;
  const kb = r.connections.rssBytesPerConn / 1024;
  const sweepRatios = c.sweep.map((p) => {
    const q = s.sweep.find((v) => v.fraction === p.fraction);
    return { fraction: p.fraction, ratio: q ? p.p99Ms / q.p99Ms : NaN };
  });
  const worstSweepRatio = Math.max(...sweepRatios.map((v) => v.ratio));
  const worstSweepShare = sweepRatios.find((v) => v.ratio === worstSweepRatio)?.fraction;
  const out: string[] = [];
  out.push(
    `## push-cluster benchmark (${r.mode} run)`,
    '',
    `${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, ` +
      `open files limit ${r.machine.openFilesLimit}, ephemeral ports ${r.machine.ephemeralPorts}; ` +
      `${r.startedAt}, ${r.durationSeconds} s. Every system, its load generator and its clients ` +
      `share these ${r.machine.cpus} cores. Payload ≈ 200 bytes, every message acked by its client.`,
    '',
    '| Figure | push-cluster | Socket.IO 4 + redis-adapter | bare ws (ceiling) | Target |',
    '| --- | --: | --: | --: | --- |',
    `| Unicast delivered msgs/s at saturation (${n(c.clients)} clients, 2 nodes; ceiling: 1 process) | ${n(c.saturation.msgsPerSec)} | ${n(s.saturation.msgsPerSec)} | ${n(w.saturation.msgsPerSec)} | |`,
    `| push-cluster ÷ ceiling | ${x(vsCeiling)} | | | ≥ 0.8× — ${met(vsCeiling >= 0.8)} |`,
    `| push-cluster ÷ Socket.IO | ${x(vsPeer)} | | | ≥ 1.2× — ${met(vsPeer >= 1.2)} |`,
    `| Latency p50 / p90 / p99 at 50% of own saturation (ms) | ${lat(c.halfLoad)} | ${lat(s.halfLoad)} | ${lat(w.halfLoad)} | p99 ≤ 2 × Socket.IO's (${f1(2 * (s.halfLoad?.p99Ms ?? NaN))}) — ${met((c.halfLoad?.p99Ms ?? Infinity) <= 2 * (s.halfLoad?.p99Ms ?? NaN))} |`,
    `| … offered rate at 50% of own saturation (msgs/s) | ${n(c.halfLoad?.offeredPerSec ?? NaN)} | ${n(s.halfLoad?.offeredPerSec ?? NaN)} | ${n(w.halfLoad?.offeredPerSec ?? NaN)} | |`,
    `| Sweep: worst push-cluster p99 ÷ Socket.IO p99 at the same share | ${x(worstSweepRatio)}${worstSweepShare === undefined ? '' : ` (at ${Math.round(worstSweepShare * 100)}%)`} | | | ≤ 10× — ${met(worstSweepRatio <= 10)} |`,
    `| Lost / duplicated at saturation | ${n(c.saturation.lost)} / ${n(c.saturation.duplicates)} | ${n(s.saturation.lost)} / ${n(s.saturation.duplicates)} | ${n(w.saturation.lost)} / ${n(w.saturation.duplicates)} | 0 |`,
    `| Fan-out: one message to ${n(r.fanout.users)} users, last socket has it after (ms, median of ${r.fanout.runs.length}) | ${f1(r.fanout.lastDeliveryMs)}${r.fanout.reached < r.fanout.users ? ` (only ${n(r.fanout.reached)} reached)` : ''} | | | |`,
    `| … 202 after / median user got it after (ms) | ${f1(r.fanout.acceptedMs)} / ${f1(r.fanout.p50Ms)} | | | |`,
    `| Idle authenticated connections over ${r.connections.pushNodes ?? 1} push node(s) | ${n(r.connections.count)} of ${n(r.connections.attempted)} tried${r.connections.attempted < r.connections.target ? ` (capped by the nodes' open-files limit ${n(r.connections.nodeFdLimit)})` : ''} | | | ${n(r.connections.target)} — ${met(r.connections.count >= r.connections.target)} |`,
    `| … connect rate (connections/s) | ${n(r.connections.connectPerSec)} | | | ≥ 3,000 — ${met(r.connections.connectPerSec >= 3000)} |`,
    `| … push node RSS per connection (all nodes) | ${n(r.connections.rssBytesPerConn)} B (${f1(kb)} KiB) | | | ≤ 10 KB — ${met(r.connections.rssBytesPerConn <= 10_000)} |`,
    ...(r.connections.nodes ?? []).map(
      (node) =>
        `| … push :${node.port}: connections held, RSS per connection | ${n(node.count)}, ${n(node.rssBytesPerConn)} B | | | |`,
    ),
    `| … of which V8 heap per connection (from the nodes' /metrics) | ${n(r.connections.heapBytesPerConn)} B | | | |`,
    `| … CPU of the nodes holding them idle (% of a core, summed, over one ping interval) | ${f1(r.connections.idleCpuPercent)} | | | |`,
    `| Consul health check flaps while measured | ${r.healthChanges.length} | | | 0 |`,
    '',
  );
  if (r.healthChanges.length > 0)
    out.push('Health check transitions:', '', ...r.healthChanges.map((h) => `- ${h}`), '');
  const byBench = r.healthChangesByBench ?? [];
  if (byBench.length > 0)
    out.push(
      "Not counted: transitions while the bench itself held the node's event loop (a forced full GC before a heap reading, or its 50,000 idle clients closing at once):",
      '',
      ...byBench.map((h) => `- ${h}`),
      '',
    );
  const busy = [c, s, w].filter((v) => v.saturation.machine.backgroundPct >= 25);
  if (busy.length > 0)
    out.push(
      `**Other processes used the CPU during the saturation of ${busy.map((v) => `${v.label} (${f1(v.saturation.machine.backgroundPct)}% of a core)`).join(', ')}: those figures are low.**`,
      '',
    );

  out.push(
    '### Latency vs offered load (ms)',
    '',
    '| % of own saturation | push-cluster msgs/s | p50 | p90 | p99 | Socket.IO msgs/s | p50 | p90 | p99 |',
    '| --: | --: | --: | --: | --: | --: | --: | --: | --: |',
  );
  for (const p of c.sweep) {
    const q = s.sweep.find((v) => v.fraction === p.fraction);
    out.push(
      `| ${Math.round(p.fraction * 100)}% | ${n(p.offeredPerSec)} | ${f1(p.p50Ms)} | ${f1(p.p90Ms)} | ${f1(p.p99Ms)} | ${n(q?.offeredPerSec ?? NaN)} | ${f1(q?.p50Ms ?? NaN)} | ${f1(q?.p90Ms ?? NaN)} | ${f1(q?.p99Ms ?? NaN)} |`,
    );
  }
  out.push('');

  out.push(
    '### CPU during unicast saturation (% of one core; RSS MiB)',
    '',
    '| System | Process | CPU % | RSS MiB |',
    '| --- | --- | --: | --: |',
  );
  for (const sys of [c, s, w])
    for (const row of sys.saturation.cpu)
      out.push(`| ${sys.label} | ${row.name} | ${f1(row.cpuPercent)} | ${f1(row.rssMiB)} |`);
  out.push('');

  out.push(
    ...cpuPerMessageMarkdown(
      [c, s, w].map((sys) => ({
        label: sys.label,
        ours: sys === c,
        cpu: sys.saturation.cpu,
        msgsPerSec: sys.saturation.msgsPerSec,
      })),
    ),
    "Socket.IO's emitter publishes from the load generator's process (a harness row), so its cost there is part of the harness figure.",
    '',
  );

  out.push(
    '### Idle push-cluster (no clients)',
    '',
    '| Process | RSS MiB | CPU % |',
    '| --- | --: | --: |',
    ...r.idle.processes.map((p) => `| ${p.name} | ${f1(p.rssMiB)} | ${f1(p.cpuPercent)} |`),
    `| **total** | ${f1(r.idle.processes.reduce((a, p) => a + p.rssMiB, 0))} | ${f1(r.idle.processes.reduce((a, p) => a + p.cpuPercent, 0))} |`,
    '',
  );
  return out.join('\n');
}
