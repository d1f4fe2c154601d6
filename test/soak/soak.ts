// npm run soak -- --minutes N: a steady load (100 messages/s over 50 users of the client
// library, dedupe on) on a real cluster for N minutes, one fault a minute after a minute
// of warm-up, cycling through the chaos faults that leave the cluster whole. At the end:
// every accepted message received (after dedupe) and acked, none failed, and every
// process's RSS within 20% of its level after warm-up. Exits 1 otherwise.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
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

interface Sample {
  at: number;
  kb: number;
}
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

const median = (xs: number[]): number | undefined =>
  xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : undefined;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'push-cluster-soak-'));
  const c = await startCluster({
    pushNodes: 2,
    env: { ACK_TIMEOUT: '3s', SQLITE_PATH: join(dir, 'soak.sqlite') },
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
    const sample = (): void => {
      const now = Date.now();
      const all = [
        ...c.all().map((p) => ({ label: `${p.service}:${p.port}`, pid: p.child.pid })),
        { label: 'redis-server', pid: c.deps.redis.child.pid },
        { label: 'consul', pid: c.deps.consul.child.pid },
      ];
      for (const { label, pid } of all) {
        if (pid === undefined) continue;
        const kb = rssKb(pid);
        if (kb === undefined) continue;
        const key = `${label}/${pid}`;
        const p = procs.get(key) ?? { label, pid, startedAt: now, samples: [] };
        p.samples.push({ at: now, kb });
        procs.set(key, p);
      }
    };
    sample();
    sampler = setInterval(sample, SAMPLE_MS);
    gen.start();
    console.log(`soak: ${MINUTES} min, ${RATE} msg/s over ${USERS.length} users`);
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

    // ---- RSS: level after warm-up vs. the last 30 s of load --------------------------
    const rssRows: string[] = [];
    let rssGrowth = 0;
    for (const p of [...procs.values()].sort((a, b) => a.label.localeCompare(b.label))) {
      const warmEnd = Math.max(t0 + WARM_UP_MS, p.startedAt + WARM_UP_MS);
      const base = median(
        p.samples.filter((s) => s.at > warmEnd - RSS_WINDOW_MS && s.at <= warmEnd).map((s) => s.kb),
      );
      const lastAt = p.samples[p.samples.length - 1]?.at ?? 0;
      const lived = lastAt >= loadEnd - SAMPLE_MS * 2;
      const end = median(
        p.samples.filter((s) => s.at > loadEnd - RSS_WINDOW_MS && s.at <= loadEnd).map((s) => s.kb),
      );
      const judged = base !== undefined && end !== undefined && lived && warmEnd < loadEnd - 60_000;
      const growth = base && end ? end / base - 1 : undefined;
      const mb = (kb: number | undefined): string => (kb ? (kb / 1024).toFixed(1) : '—');
      let verdict = 'ok';
      if (!lived) verdict = 'replaced by a fault (not judged)';
      else if (!judged) verdict = 'started late (not judged)';
      else if ((growth ?? 0) > RSS_LIMIT) {
        verdict = 'GREW';
        rssGrowth++;
      }
      rssRows.push(
        `| ${p.label} | ${p.pid} | ${mb(base)} | ${mb(end)} | ${growth === undefined ? '—' : `${(growth * 100).toFixed(1)}%`} | ${p.samples.length} | ${verdict} |`,
      );
    }

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
      '\n| process | pid | RSS after warm-up (MB) | RSS at the end (MB) | growth | samples | verdict |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rssRows) console.log(r);
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
