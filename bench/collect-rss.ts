// collect's memory under a sustained saturating load with the default store (SQLite): does
// its RSS level off after warm-up, or grow with the messages it has stored? (Only collect is
// sampled.)
//
//   npm run build && npx tsx bench/collect-rss.ts [--minutes 5] [--users 200] [--senders 8]
//
// A whole cluster of real processes (test/support's startCluster: SQLite in a temporary
// folder), `users` clients on the client library that ack everything, and `senders`
// concurrent loops posting batches of 100 messages as fast as collect answers. Every 5 s it
// samples collect's RSS and prints it; at the end, the throughput, RSS after warm-up (the
// first minute) against the rest, and the size of the SQLite file. Loopback only; every
// loop stops when the time is up.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { KEYS, startCluster } from '../test/support/cluster.js';
import { Population } from '../test/support/load.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    users: { type: 'string', default: '200' },
    senders: { type: 'string', default: '8' },
  },
});
const durationMs = Number(args.minutes) * 60_000;
const WARM_UP_MS = Math.min(60_000, durationMs / 5);
const SAMPLE_MS = 5000;

const rssKiB = (pid: number): number =>
  Number(
    execFileSync('ps', ['-o', 'rss=', '-p', String(pid)])
      .toString()
      .trim(),
  );

const cluster = await startCluster({ pushNodes: 2 });
const users = Array.from({ length: Number(args.users) }, (_, i) => `rss-user-${i}`);
const population = new Population(cluster, users);
try {
  await population.start();
  const collectPid = cluster.collect.child.pid as number;
  // The cluster gives collect a file in its temporary folder: read where from its environment.
  const sqlitePath = readFileSync(`/proc/${collectPid}/environ`, 'utf8')
    .split('\0')
    .find((v) => v.startsWith('SQLITE_PATH='))
    ?.slice('SQLITE_PATH='.length);
  const t0 = Date.now();
  const until = t0 + durationMs;
  let sent = 0;
  let refused = 0;
  const procs = cluster
    .all()
    .map((p) => ({ label: `${p.service}:${p.port}`, pid: p.child.pid as number }));
  const samples: { atMs: number; rssKiB: number }[] = [];
  const others = new Map<string, { atMs: number; rssKiB: number }[]>();
  const sampler = setInterval(() => {
    const atMs = Date.now() - t0;
    const sample = { atMs, rssKiB: rssKiB(collectPid) };
    samples.push(sample);
    for (const p of procs) {
      const list = others.get(p.label) ?? [];
      list.push({ atMs, rssKiB: rssKiB(p.pid) });
      others.set(p.label, list);
    }
    console.error(
      `${(sample.atMs / 1000).toFixed(0).padStart(4)} s  collect RSS ${(sample.rssKiB / 1024).toFixed(1)} MiB  sent ${sent}`,
    );
  }, SAMPLE_MS);
  let n = 0;
  await Promise.all(
    Array.from({ length: Number(args.senders) }, async () => {
      while (Date.now() < until) {
        const messages = Array.from({ length: 100 }, () => ({
          to: users[n++ % users.length],
          payload: { n, text: 'a push message of ordinary size, about two hundred bytes of JSON' },
        }));
        const res = await fetch(`${cluster.collect.url}/v1/messages`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ messages }),
        });
        await res.arrayBuffer();
        if (res.status === 202) sent += messages.length;
        else refused += messages.length;
      }
    }),
  );
  clearInterval(sampler);
  const received = [...population.received.values()].reduce((a, s) => a + s.size, 0);
  const after = samples.filter((s) => s.atMs >= WARM_UP_MS).map((s) => s.rssKiB);
  const atWarmUp = after[0] ?? 0;
  const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
  const dbBytes = sqlitePath
    ? readdirSync(dirname(sqlitePath))
        .filter((f) => f.startsWith('messages.sqlite'))
        .reduce((a, f) => a + statSync(`${dirname(sqlitePath)}/${f}`).size, 0)
    : 0;
  console.log(`duration ${args.minutes} min, ${users.length} users, ${args.senders} senders`);
  console.log(
    `ingested ${sent} (${Math.round(sent / (durationMs / 1000))}/s), refused ${refused}, received ${received} so far`,
  );
  console.log(
    `collect RSS after warm-up (${WARM_UP_MS / 1000} s): ${mib(atWarmUp)}; after it, min ${mib(Math.min(...after))}, max ${mib(Math.max(...after))}, last ${mib(after.at(-1) ?? 0)} (max is ${(((Math.max(...after) - atWarmUp) / atWarmUp) * 100).toFixed(1)}% over the warm-up level)`,
  );
  console.log(
    `SQLite files (database, WAL, shared memory): ${(dbBytes / 1024 / 1024).toFixed(1)} MiB`,
  );
} finally {
  population.stop();
  await cluster.stop();
}
