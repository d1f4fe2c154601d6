// npm run chaos: the fault suite. Each fault (test/chaos/faults/) gets a real cluster of
// its own, clients that record what reaches them and, for most, a steady load; then a
// table. Exits 1 if any message is lost or a row's own check fails.
//
//   npm run chaos                  every row, full load
//   npm run chaos -- --quick       smaller load, shorter hangs (≤ 10 min in all)
//   npm run chaos -- --only 9,12   only these rows
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmt, quick, type Fault, type Result } from './common.js';
import { backlogFault } from './faults/backlog.js';
import { bigMessageFault } from './faults/big-message.js';
import { classicFaults } from './faults/classic.js';
import { consulClusterFaults } from './faults/consul-cluster.js';
import { hangFault } from './faults/hang.js';
import { launcherFault } from './faults/launcher.js';
import { redisClusterFault } from './faults/redis-cluster.js';
import { redisPauseFault } from './faults/redis-pause.js';
import { stallFault } from './faults/stall.js';

const faults: Fault[] = [
  ...classicFaults,
  stallFault,
  redisPauseFault,
  bigMessageFault,
  backlogFault,
  hangFault,
  launcherFault,
  ...consulClusterFaults,
  redisClusterFault,
];

function selected(): Fault[] {
  const i = process.argv.indexOf('--only');
  if (i < 0) return faults;
  const rows = new Set((process.argv[i + 1] ?? '').split(',').map(Number));
  return faults.filter((_, n) => rows.has(n + 1));
}

async function main(): Promise<void> {
  const storeDir = mkdtempSync(join(tmpdir(), 'push-cluster-chaos-'));
  const rows: (Result & { fault: string })[] = [];
  const started = performance.now();
  try {
    for (const fault of selected()) {
      process.stdout.write(`${fault.name} … `);
      const t = performance.now();
      let result: Result;
      try {
        result = await fault.run({ sqlitePath: join(storeDir, `${rows.length}.sqlite`) });
      } catch (err) {
        console.error(`\n${fault.name}: ${(err as Error).stack ?? String(err)}`);
        result = {
          sent: 0,
          delivered: 0,
          duplicates: 0,
          lost: 0,
          lostIds: [],
          note: '',
          problem: `the row failed to run: ${(err as Error).message.split('\n')[0]}`,
        };
      }
      rows.push({ fault: fault.name, ...result });
      const verdict = [
        result.lost === 0 ? '' : `LOST ${result.lost}: ${result.lostIds.join(', ')}`,
        result.problem ? `FAIL: ${result.problem}` : '',
      ].filter(Boolean);
      process.stdout.write(
        `${verdict.length ? verdict.join('; ') : 'ok'} (${((performance.now() - t) / 1000).toFixed(0)} s)\n`,
      );
    }
  } finally {
    rmSync(storeDir, { recursive: true, force: true });
  }
  console.log(
    '\n| fault | detected after | recovered after | sent | delivered | duplicates (before dedupe) | lost | verdict | note |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const verdict = r.lost > 0 ? 'LOST' : r.problem ? `FAIL: ${r.problem}` : 'ok';
    console.log(
      `| ${r.fault} | ${fmt(r.detectedMs)} | ${fmt(r.recoveredMs)} | ${r.sent} | ${r.delivered} | ${r.duplicates} | ${r.lost} | ${verdict} | ${r.note} |`,
    );
  }
  const lost = rows.reduce((n, r) => n + r.lost, 0);
  const failed = rows.filter((r) => r.problem).length;
  console.log(
    `\n${rows.length} faults${quick ? ' (--quick)' : ''}, ${lost} messages lost, ${failed} rows failing a check, ` +
      `${((performance.now() - started) / 60_000).toFixed(1)} min.`,
  );
  process.exit(lost === 0 && failed === 0 ? 0 : 1);
}

void main();
