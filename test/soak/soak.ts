// npm run soak -- --minutes N: a steady load (100 messages/s over 50 users of the client
// library, dedupe on) on a real cluster for N minutes, one fault a minute after a minute
// of warm-up, cycling through the chaos faults that leave the cluster whole. At the end:
// every accepted message received (after dedupe) and acked, none failed, and every
// process's RSS within 20% of its level after warm-up. Exits 1 otherwise.
//
// Memory is sampled every 5 s: RSS from /proc for every process, and for the services
// their /metrics (prom-client's default metrics: V8 heap used and total, the young
// generation's size, external memory, CPU seconds), so that a growth of RSS can be told
// apart: live JavaScript objects (heap used grows), V8 sizing its heap (heap total or the
// young generation grows, heap used does not) or memory outside the V8 heap (RSS grows
// alone). The report gives each at warm-up and at the end, and a series over the run to
// show whether a growth levels off. A level is the median of the samples in the 30 s
// before a point in time; "after warm-up" is 60 s after the load started, or for a
// process a fault restarted, 60 s after it started (under load from its first second).
// One exception: a push node's load is its clients, and one that a fault restarted comes
// back empty, then takes another node's clients when that node is stopped later; if at
// the end of its first minute it held under 80% of the clients it holds at the end, it
// is judged from 60 s after it last rose to 80% of them (the table shows its clients and
// its growth from its first minute as well). Only RSS is judged; the rest explains it.
//
// --env KEY=VALUE (repeatable) sets a variable in every service's environment (e.g.
// NODE_OPTIONS, MALLOC_ARENA_MAX), for experiments; --samples-out FILE writes the raw
// samples as JSON.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken } from '../support/clients.js';
import { LoadGenerator } from '../support/load.js';
import { LibClients, settleInboxes, sleep, stopFor } from '../chaos/common.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
};
const MINUTES = arg('--minutes', 5);
if (!(MINUTES >= 2 && MINUTES <= 120)) throw new Error('--minutes must be 2..120');
/** --env KEY=VALUE (repeatable): set in every service's environment, for experiments. */
const SERVICE_ENV = Object.fromEntries(
  process.argv
    .flatMap((a, i) => (a === '--env' ? [process.argv[i + 1] ?? ''] : []))
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
) as Record<string, string>;
const USERS = Array.from({ length: 50 }, (_, i) => `soak-user-${i}`);
const RATE = 100;
const WARM_UP_MS = 60_000;
const SAMPLE_MS = 5000;
const RSS_WINDOW_MS = 30_000;
const RSS_LIMIT = 0.2;

/** The faults, in the order they come; each leaves every process running again. */
const FAULTS: { name: string; inject(c: TestCluster): Promise<void> }[] = [
  {
    name: 'SIGSTOP push node 1 for 4 s',
    inject: (c) => stopFor(c.push[0]!.child.pid!, 4000),
  },
  { name: 'SIGSTOP Redis for 5 s', inject: (c) => stopFor(c.deps.redis.child.pid!, 5000) },
  {
    name: 'SIGKILL push node 1, restart',
    async inject(c) {
      c.push[0]!.child.kill('SIGKILL');
      await c.restart(c.push[0]!);
    },
  },
  {
    name: 'SIGKILL a dispatch, restart',
    async inject(c) {
      c.dispatch.child.kill('SIGKILL');
      await c.restart(c.dispatch);
    },
  },
  { name: 'restart Redis', inject: (c) => c.deps.redis.restart() },
  {
    name: 'SIGKILL collect, restart',
    async inject(c) {
      c.collect.child.kill('SIGKILL');
      await c.restart(c.collect);
    },
  },
  { name: 'restart Consul', inject: (c) => c.deps.consul.restart() },
  {
    name: 'auth down 10 s',
    async inject(c) {
      c.auth.child.kill('SIGKILL');
      await sleep(10_000);
      await c.restart(c.auth);
    },
  },
  {
    name: 'SIGTERM push node 2, restart',
    async inject(c) {
      await c.restart(c.push[1]!);
    },
  },
];

/** One sample: RSS from /proc, the rest (bytes) from the service's /metrics when it answered. */
interface Sample {
  at: number;
  kb: number;
  heapUsed?: number;
  heapTotal?: number;
  external?: number;
  /** V8's young generation (nodejs_heap_space_size_total_bytes{space="new"}). */
  newSpace?: number;
  /** CPU seconds used so far (process_cpu_seconds_total). */
  cpu?: number;
  /** A push node's open WebSockets (push_connections): its share of the load. */
  connections?: number;
}
type Measure = 'heapUsed' | 'heapTotal' | 'external' | 'newSpace' | 'cpu' | 'connections';
interface Proc {
  label: string;
  pid: number;
  startedAt: number;
  samples: Sample[];
}

function rssKb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The prom-client default metrics the soak follows, from a service's /metrics text. */
function parseMetrics(text: string): Pick<Sample, Measure> {
  const lines = text.split('\n');
  const value = (name: string, label = ''): number | undefined => {
    const line = lines.find((l) => l.startsWith(`${name}{`) && l.includes(label));
    const v = line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
    return Number.isFinite(v) ? v : undefined;
  };
  return {
    heapUsed: value('nodejs_heap_size_used_bytes'),
    heapTotal: value('nodejs_heap_size_total_bytes'),
    external: value('nodejs_external_memory_bytes'),
    newSpace: value('nodejs_heap_space_size_total_bytes', 'space="new"'),
    cpu: value('process_cpu_seconds_total'),
    connections: value('push_connections'),
  };
}

const median = (xs: number[]): number | undefined =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'push-cluster-soak-'));
  const c = await startCluster({
    pushNodes: 2,
    env: { ACK_TIMEOUT: '3s', SQLITE_PATH: join(dir, 'soak.sqlite'), ...SERVICE_ENV },
  });
  const lib = new LibClients(`${c.dispatch.url}/v1/connect`, (u) => mintToken(c, u, 24 * 3600));
  const gen = new LoadGenerator(() => c.collect.url, USERS, RATE, RATE * 60 * (MINUTES + 1));
  const procs = new Map<string, Proc>();
  let sampler: NodeJS.Timeout | undefined;
  const faultLog: string[] = [];
  let failing = false;
  try {
    await c.spawn('dispatch');
    await lib.start(USERS);
    const t0 = Date.now();
    // RSS from /proc for every process; for the services also their /metrics (V8 heap,
    // external memory), so that a growth can be told apart: live JS objects (heap used),
    // V8 sizing (heap total, young generation) or outside the heap (RSS alone).
    let sampling = false;
    const sample = async (): Promise<void> => {
      if (sampling) return;
      sampling = true;
      try {
        const now = Date.now();
        const all = [
          ...c.all().map((p) => ({ label: `${p.service}:${p.port}`, pid: p.child.pid, proc: p })),
          { label: 'redis-server', pid: c.deps.redis.child.pid, proc: undefined },
          { label: 'consul', pid: c.deps.consul.child.pid, proc: undefined },
        ];
        await Promise.all(
          all.map(async ({ label, pid, proc }) => {
            if (pid === undefined) return;
            const kb = rssKb(pid);
            if (kb === undefined) return;
            const s: Sample = { at: now, kb };
            if (proc) {
              const res = await fetch(`${proc.url}/metrics`, {
                signal: AbortSignal.timeout(2000),
              }).catch(() => undefined);
              const text = res?.ok ? await res.text().catch(() => undefined) : undefined;
              // Only if the same process answered (not one restarted meanwhile).
              if (text !== undefined && proc.child.pid === pid)
                Object.assign(s, parseMetrics(text));
            }
            const key = `${label}/${pid}`;
            const p = procs.get(key) ?? { label, pid, startedAt: now, samples: [] };
            p.samples.push(s);
            procs.set(key, p);
          }),
        );
      } finally {
        sampling = false;
      }
    };
    await sample();
    sampler = setInterval(() => void sample(), SAMPLE_MS);
    gen.start();
    console.log(`soak: ${MINUTES} min, ${RATE} msg/s over ${USERS.length} users`);
    if (Object.keys(SERVICE_ENV).length) console.log(`service env: ${JSON.stringify(SERVICE_ENV)}`);
    for (let minute = 1; minute < MINUTES; minute++) {
      await sleep(Math.max(0, t0 + minute * 60_000 - Date.now()));
      const fault = FAULTS[(minute - 1) % FAULTS.length]!;
      const at = ((Date.now() - t0) / 1000).toFixed(0);
      await fault.inject(c);
      const line = `${at} s: ${fault.name} (${((Date.now() - t0) / 1000 - Number(at)).toFixed(1)} s)`;
      faultLog.push(line);
      console.log(`  ${line}`);
    }
    await sleep(Math.max(0, t0 + MINUTES * 60_000 - Date.now()));
    const loadEnd = Date.now();
    await gen.stop();
    clearInterval(sampler);

    const samplesOut = process.argv[process.argv.indexOf('--samples-out') + 1];
    if (process.argv.includes('--samples-out') && samplesOut)
      writeFileSync(samplesOut, JSON.stringify({ t0, loadEnd, procs: [...procs.values()] }));

    // ---- messages: received (after dedupe), then acked in the store ----------------
    const outcome = await settleInboxes(gen.sent, (u) => lib.inboxes.get(u), 120_000);
    const statuses = new Map<string, string>();
    const unacked = (): string[] =>
      gen.sent.map((s) => s.id).filter((id) => statuses.get(id) !== 'acked');
    for (let round = 0; round < 12 && unacked().length > 0; round++) {
      if (round > 0) await sleep(5000);
      const todo = unacked();
      for (let i = 0; i < todo.length; i += 50) {
        await Promise.all(
          todo.slice(i, i + 50).map(async (id) => {
            const res = await fetch(`${c.collect.url}/v1/messages/${id}`, {
              headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
            }).catch(() => undefined);
            const s = res?.ok ? ((await res.json()) as { status: string }).status : 'unknown';
            statuses.set(id, s);
          }),
        );
      }
    }
    const byStatus: Record<string, number> = {};
    for (const s of statuses.values()) byStatus[s] = (byStatus[s] ?? 0) + 1;

    // ---- memory: level after warm-up vs. the last 30 s of load ----------------------
    // Each level is the median of the samples in the 30 s before a point in time.
    const level = (p: Proc, at: number, k: 'kb' | Measure): number | undefined => {
      const xs = p.samples
        .filter((x) => x.at > at - RSS_WINDOW_MS && x.at <= at)
        .map((x) => (k === 'kb' ? x.kb * 1024 : x[k]))
        .filter((v): v is number => v !== undefined);
      return xs.length >= 2 ? median(xs) : undefined;
    };
    const mb = (b: number | undefined): string => (b ? (b / 1048576).toFixed(1) : '—');
    const rssRows: string[] = [];
    const heapRows: string[] = [];
    let rssGrowth = 0;
    const sorted = [...procs.values()].sort(
      (a, b) => a.label.localeCompare(b.label) || a.startedAt - b.startedAt,
    );
    for (const p of sorted) {
      const firstWarmEnd = Math.max(t0 + WARM_UP_MS, p.startedAt + WARM_UP_MS);
      const lastAt = p.samples[p.samples.length - 1]?.at ?? 0;
      const lived = lastAt >= loadEnd - SAMPLE_MS * 2;
      const endAt = lived ? loadEnd : lastAt;
      // A push node that had under 80% of its final clients at the end of its first
      // minute (restarted empty; the clients of another node came to it later) is judged
      // from 60 s after it last rose to 80% of them: an idle node's level is no baseline
      // for a loaded one. Its growth from its first minute is printed too.
      let warmEnd = firstWarmEnd;
      const endConns = lived ? level(p, loadEnd, 'connections') : undefined;
      const warmConns = level(p, firstWarmEnd, 'connections');
      if (endConns !== undefined && warmConns !== undefined && warmConns < 0.8 * endConns) {
        const below = p.samples.filter(
          (x) => x.at <= loadEnd && x.connections !== undefined && x.connections < 0.8 * endConns,
        );
        warmEnd = Math.max(warmEnd, (below[below.length - 1]?.at ?? 0) + WARM_UP_MS);
      }
      const base = level(p, warmEnd, 'kb');
      const end = lived ? level(p, loadEnd, 'kb') : undefined;
      const judged = base !== undefined && end !== undefined && lived && warmEnd < loadEnd - 60_000;
      const growth = base && end ? end / base - 1 : undefined;
      const firstBase = level(p, firstWarmEnd, 'kb');
      const pct = (g: number | undefined): string =>
        g === undefined ? '—' : `${(g * 100).toFixed(1)}%`;
      const clients = (at: number): string => level(p, at, 'connections')?.toFixed(0) ?? '—';
      let verdict = 'ok';
      if (!lived) verdict = 'replaced by a fault (not judged)';
      else if (!judged)
        verdict = `${warmEnd === firstWarmEnd ? 'started' : 'took its clients'} late (not judged)`;
      else if ((growth ?? 0) > RSS_LIMIT) {
        verdict = 'GREW';
        rssGrowth++;
      }
      rssRows.push(
        `| ${p.label} | ${p.pid} | ${((warmEnd - t0) / 60_000).toFixed(1)} | ${mb(base)} | ${mb(end)} | ${pct(growth)} | ${p.label.startsWith('push') ? `${clients(firstWarmEnd)} / ${clients(warmEnd)} / ${clients(endAt)}` : ''} | ${warmEnd === firstWarmEnd ? '' : `${mb(firstBase)}: ${pct(firstBase && end ? end / firstBase - 1 : undefined)}`} | ${p.samples.length} | ${verdict} |`,
      );
      if (p.samples.some((x) => x.heapUsed !== undefined)) {
        const pair = (k: 'kb' | Measure): string =>
          `${mb(level(p, warmEnd, k))} → ${mb(warmEnd < endAt ? level(p, endAt, k) : undefined)}`;
        // CPU from warm-up to the end, as a share of one core (what a V8 setting costs).
        const cpu = p.samples.filter((x) => x.cpu !== undefined && x.at >= warmEnd);
        const first = cpu[0];
        const last = cpu[cpu.length - 1];
        const share =
          first && last && last.at - first.at >= 60_000
            ? `${((((last.cpu ?? 0) - (first.cpu ?? 0)) * 1000 * 100) / (last.at - first.at)).toFixed(1)}%`
            : '—';
        heapRows.push(
          `| ${p.label} | ${p.pid} | ${lived ? 'end of load' : 'last seen'} | ${pair('kb')} | ${pair('heapUsed')} | ${pair('heapTotal')} | ${pair('newSpace')} | ${pair('external')} | ${share} |`,
        );
      }
    }

    // ---- memory over time: does a growth level off? ----------------------------------
    const step = MINUTES <= 10 ? 1 : MINUTES <= 20 ? 2 : 3;
    const marks = [1];
    for (let m = step; m <= MINUTES; m += step) if (m > 1) marks.push(m);
    if (marks[marks.length - 1] !== MINUTES) marks.push(MINUTES);
    const series = (k: 'kb' | Measure, title: string): string[] => {
      const rows = [
        `\n${title} (MB) at minute …`,
        `| process | pid | ${marks.join(' | ')} |`,
        `|---|---|${marks.map(() => '---|').join('')}`,
      ];
      for (const p of sorted) {
        if (k !== 'kb' && !p.samples.some((x) => x[k] !== undefined)) continue;
        const cells = marks.map((m) => {
          const at = Math.min(t0 + m * 60_000, loadEnd);
          // Only points the process lived through whole (its first 30 s would be start-up).
          return at - RSS_WINDOW_MS >= p.startedAt ? mb(level(p, at, k)) : '—';
        });
        if (cells.filter((x) => x !== '—').length >= 2)
          rows.push(`| ${p.label} | ${p.pid} | ${cells.join(' | ')} |`);
      }
      return rows;
    };
    const seriesRows = [
      ...series('kb', 'RSS'),
      ...series('heapUsed', 'V8 heap used'),
      ...series('heapTotal', 'V8 heap total'),
      ...series('newSpace', 'V8 young generation (new space, part of heap total)'),
      ...series('external', 'external memory (Buffers, ArrayBuffers)'),
    ];

    const notAcked = gen.sent.length - (byStatus.acked ?? 0);
    console.log('\nfaults:');
    for (const l of faultLog) console.log(`  ${l}`);
    console.log('\n| messages | count |\n|---|---|');
    console.log(`| accepted (202) | ${outcome.sent} |`);
    console.log(`| refused or failed POST (not sent) | ${gen.refused} |`);
    console.log(`| received after dedupe | ${outcome.delivered} |`);
    console.log(`| duplicates dropped by the client | ${outcome.duplicates} |`);
    console.log(`| lost (never received) | ${outcome.lost} |`);
    console.log(`| store status | ${JSON.stringify(byStatus)} |`);
    console.log(`| not acked in the store | ${notAcked} |`);
    console.log(`| failed | ${byStatus.failed ?? 0} |`);
    console.log(
      '\n| process | pid | warm-up ends (min) | RSS after warm-up (MB) | RSS at the end (MB) | growth | clients: first minute / warm-up / end | RSS after its first minute: growth from it | samples | verdict |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rssRows) console.log(r);
    console.log(
      '\nmemory of the services, after warm-up → at the end of load (or when last seen), MB; ' +
        'from /proc (RSS) and /metrics (V8)',
    );
    console.log(
      '| process | pid | end | RSS | heap used | heap total | young gen | external | CPU after warm-up |\n|---|---|---|---|---|---|---|---|---|',
    );
    for (const r of heapRows) console.log(r);
    for (const r of seriesRows) console.log(r);
    if (outcome.lost) console.log(`lost, e.g.: ${outcome.lostIds.join(', ')}`);
    failing = outcome.lost > 0 || notAcked > 0 || (byStatus.failed ?? 0) > 0 || rssGrowth > 0;
    console.log(
      `\nsoak ${failing ? 'FAILED' : 'passed'}: ${outcome.lost} lost, ${notAcked} not acked, ` +
        `${byStatus.failed ?? 0} failed, ${rssGrowth} processes grew over ${RSS_LIMIT * 100}%.`,
    );
  } finally {
    clearInterval(sampler);
    await gen.stop();
    lib.stop();
    await c.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(failing ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
