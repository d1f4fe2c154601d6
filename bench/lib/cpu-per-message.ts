import type { CpuRow } from './report.js';

/**
 * CPU budget per delivered message, in µs, for each kind of push-cluster process under
 * unicast saturation (every message stored, routed, pushed and acked). Set from the
 * profile (bench/results/profile.md) so that the cluster's own processes together stay
 * under what Socket.IO's nodes and its Redis spend, the way to lead it on the same cores:
 * collect stores, marks and acks each message (SQLite); dispatch looks up routes and
 * forwards; each push node writes frames and reads acks for its half of the users.
 */
export const CPU_BUDGET_US: Readonly<Record<string, number>> = {
  collect: 20,
  dispatch: 8,
  'push (each node)': 15,
  auth: 1,
  consul: 1,
  'redis-server': 4,
};

/** The budget kind of a process row (`push :7101` → `push (each node)`). */
function kindOf(name: string): string | undefined {
  if (name.startsWith('push :')) return 'push (each node)';
  return name in CPU_BUDGET_US ? name : undefined;
}

export interface CpuPerMessageRow {
  name: string;
  usPerMessage: number;
  budgetUs: number | undefined;
}

/** µs of CPU each process spent per delivered message during the measured window. */
export function cpuPerMessage(cpu: readonly CpuRow[], msgsPerSec: number): CpuPerMessageRow[] {
  return cpu.map((row) => {
    const kind = kindOf(row.name);
    return {
      name: row.name,
      // cpuPercent % of a core = cpuPercent × 10,000 µs of CPU per second.
      usPerMessage: msgsPerSec > 0 ? (row.cpuPercent * 10_000) / msgsPerSec : NaN,
      budgetUs: kind === undefined ? undefined : CPU_BUDGET_US[kind],
    };
  });
}

/** The report's table: every process of each system, its µs per message, and for
 *  push-cluster's own processes the budget and whether it was met. */
export function cpuPerMessageMarkdown(
  systems: readonly { label: string; ours: boolean; cpu: readonly CpuRow[]; msgsPerSec: number }[],
): string[] {
  const f1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '—');
  const out = [
    '### CPU per delivered message during unicast saturation (µs)',
    '',
    '| System | Process | µs / message | Budget | |',
    '| --- | --- | --: | --: | --- |',
  ];
  for (const sys of systems) {
    const rows = cpuPerMessage(sys.cpu, sys.msgsPerSec);
    let total = 0;
    for (const r of rows) {
      if (!r.name.startsWith('harness'))
        total += Number.isFinite(r.usPerMessage) ? r.usPerMessage : 0;
      const budget = sys.ours && r.budgetUs !== undefined ? r.budgetUs : undefined;
      const verdict = budget === undefined ? '' : r.usPerMessage <= budget ? 'met' : 'not met';
      out.push(
        `| ${sys.label} | ${r.name} | ${f1(r.usPerMessage)} | ${budget === undefined ? '' : f1(budget)} | ${verdict} |`,
      );
    }
    out.push(`| ${sys.label} | **its own processes (no harness)** | **${f1(total)}** | | |`);
  }
  out.push('');
  return out;
}
