import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** Percentile by nearest rank over a copy of the samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return percentileOfSorted(sorted, p);
}

/** Percentile by nearest rank of samples already sorted ascending. */
export function percentileOfSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

export const ms = (n: number): string => `${n.toFixed(1)} ms`;

/** Resident set size of a process, from /proc (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : NaN;
}

let clockTicks: number | undefined;
/** USER_HZ, the unit of utime/stime in /proc/<pid>/stat (almost always 100). */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU time (user + system, seconds) a process has used so far, from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / clockTicksPerSecond();
}

export interface ProcUsage {
  name: string;
  pid: number;
  rssBytes: number;
  /** Average CPU over the window, in % of one core. */
  cpuPercent: number;
}

/** Each process's CPU time so far (seconds), NaN for one that is gone. */
function cpuSecondsOf(procs: { pid: number }[]): Promise<number[]> {
  return Promise.all(procs.map((p) => cpuSeconds(p.pid).catch(() => NaN)));
}

/** % of one core used between two readings of cpuSecondsOf, `seconds` apart. */
const cpuPercentOf = (before: number[], after: number[], i: number, seconds: number): number =>
  (((after[i] as number) - (before[i] as number)) / seconds) * 100;

/** Starts a CPU window over some processes; `end()` gives each one's CPU% and current RSS. */
export async function cpuWindow(
  procs: { name: string; pid: number }[],
): Promise<{ end(): Promise<ProcUsage[]> }> {
  const t0 = performance.now();
  const before = await cpuSecondsOf(procs);
  return {
    async end() {
      const after = await cpuSecondsOf(procs);
      const seconds = (performance.now() - t0) / 1000;
      return Promise.all(
        procs.map(async (p, i) => ({
          name: p.name,
          pid: p.pid,
          rssBytes: await rssBytes(p.pid).catch(() => NaN),
          cpuPercent: cpuPercentOf(before, after, i, seconds),
        })),
      );
    },
  };
}

/** CPU of each process (% of one core) in each interval of `everyMs`, from now until
 *  `stop`; a process gone reads NaN. */
export async function cpuSeries(
  procs: { name: string; pid: number }[],
  everyMs: number,
): Promise<{ stop(): Promise<{ name: string; cpuPercent: number }[][]> }> {
  const intervals: { name: string; cpuPercent: number }[][] = [];
  let before = await cpuSecondsOf(procs);
  let at = performance.now();
  const sample = async (): Promise<void> => {
    const after = await cpuSecondsOf(procs);
    const seconds = (performance.now() - at) / 1000;
    at = performance.now();
    intervals.push(
      procs.map((p, i) => ({ name: p.name, cpuPercent: cpuPercentOf(before, after, i, seconds) })),
    );
    before = after;
  };
  // One reading at a time, in order.
  let sampling = Promise.resolve();
  const timer = setInterval(() => {
    sampling = sampling.then(sample);
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await sampling;
      return intervals;
    },
  };
}

/** Summary of latency samples (ms). */
export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
}

export function summarize(samples: Float64Array | number[]): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  return {
    count: sorted.length,
    p50Ms: round(percentileOfSorted(sorted, 50)),
    p90Ms: round(percentileOfSorted(sorted, 90)),
    p99Ms: round(percentileOfSorted(sorted, 99)),
    maxMs: round(sorted.length ? (sorted[sorted.length - 1] as number) : NaN),
  };
}

export const round = (n: number, digits = 2): number =>
  Number.isFinite(n) ? Number(n.toFixed(digits)) : n;

export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** Busy CPU seconds of the whole machine so far (all cores), from /proc/stat. */
export async function machineBusySeconds(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [user, nice, system, , , irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number) as number[];
  const busy = [user, nice, system, irq, softirq, steal].reduce<number>((a, v) => a + (v ?? 0), 0);
  return busy / clockTicksPerSecond();
}

/** `root` and every process under it, from /proc. */
export async function processTree(root: number): Promise<number[]> {
  const { readdir } = await import('node:fs/promises');
  const parent = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(entry), ppid);
    } catch {
      // gone meanwhile
    }
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p && hops < 64; p = parent.get(p), hops++)
      if (p === root) return true;
    return false;
  };
  return [...parent.keys()].filter(inTree);
}

export interface MachineUsage {
  /** % of one core: everything the machine ran */
  machinePct: number;
  /** % of one core: this benchmark's own process tree */
  benchPct: number;
  /** % of one core: everything else (other users of the box): figures measured with a high
   *  value here are not comparable */
  backgroundPct: number;
}

/** A window over the machine's CPU use, split into this process tree and the rest. */
export async function machineWindow(root = process.pid): Promise<{ end(): Promise<MachineUsage> }> {
  const t0 = performance.now();
  const pids = await processTree(root);
  const ours0 = await Promise.all(pids.map((p) => cpuSeconds(p).catch(() => NaN)));
  const all0 = await machineBusySeconds();
  return {
    async end() {
      const all1 = await machineBusySeconds();
      const ours1 = await Promise.all(pids.map((p) => cpuSeconds(p).catch(() => NaN)));
      const seconds = (performance.now() - t0) / 1000;
      let ours = 0;
      ours1.forEach((v, i) => {
        const d = v - (ours0[i] as number);
        if (Number.isFinite(d)) ours += d;
      });
      const machinePct = ((all1 - all0) / seconds) * 100;
      const benchPct = (ours / seconds) * 100;
      return {
        machinePct: round(machinePct, 1),
        benchPct: round(benchPct, 1),
        backgroundPct: round(Math.max(0, machinePct - benchPct), 1),
      };
    },
  };
}
