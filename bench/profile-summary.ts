// Summarizes V8 .cpuprofile files: self time per function (name + file:line) and per
// module, for each profiled process. Run: tsx bench/profile-summary.ts <dir> [topN]
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  process: string;
  /** profiled wall time, ms */
  totalMs: number;
  /** not idle, ms */
  busyMs: number;
  top: { fn: string; where: string; selfMs: number; pctOfBusy: number }[];
  modules: { module: string; selfMs: number; pctOfBusy: number }[];
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function shortUrl(url: string): string {
  if (!url) return '';
  let u = url.replace(/^file:\/\//, '');
  if (u.startsWith(ROOT)) u = u.slice(ROOT.length);
  return u.replace(/^.*node_modules\//, 'node_modules/');
}

/** Which module a frame belongs to: a package, a project file, node internals or V8. */
function moduleOf(cf: CallFrame): string {
  const u = shortUrl(cf.url);
  if (!u) return cf.functionName.startsWith('(') ? cf.functionName : '(native/V8)';
  const pkg = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (pkg) return pkg[1] as string;
  if (u.startsWith('node:internal/deps/')) return u.split('/').slice(0, 3).join('/');
  if (u.startsWith('node:internal/'))
    return u.split('/').slice(0, 2).join('/').replace(/\.js$/, '');
  if (u.startsWith('node:')) return u;
  return u;
}

export async function summarizeProfile(path: string, topN = 10): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time before sample i: charge it to the sample that ends it.
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fns = new Map<string, { fn: string; where: string; us: number }>();
  const mods = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const cf = (byId.get(id) as ProfileNode).callFrame;
    total += us;
    if (cf.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const fn = cf.functionName || '(anonymous)';
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${fn} ${where}`;
    const e = fns.get(key) ?? { fn, where, us: 0 };
    e.us += us;
    fns.set(key, e);
    const m = moduleOf(cf);
    mods.set(m, (mods.get(m) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number): number => Number(((us / busy) * 100).toFixed(1));
  const name = basename(path).replace(/-\d+\.cpuprofile$/, '');
  return {
    file: basename(path),
    process: name,
    totalMs: Math.round(total / 1000),
    busyMs: Math.round(busy / 1000),
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, topN)
      .map((e) => ({
        fn: e.fn,
        where: e.where,
        selfMs: Math.round(e.us / 1000),
        pctOfBusy: pct(e.us),
      })),
    modules: [...mods]
      .sort((a, b) => b[1] - a[1])
      .slice(0, topN)
      .map(([module, us]) => ({ module, selfMs: Math.round(us / 1000), pctOfBusy: pct(us) })),
  };
}

export async function summarizeDir(dir: string, topN = 10): Promise<ProfileSummary[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort();
  return Promise.all(files.map((f) => summarizeProfile(join(dir, f), topN)));
}

export function profileMarkdown(summaries: ProfileSummary[]): string {
  const out: string[] = [];
  for (const s of summaries) {
    out.push(
      `### ${s.process} (${s.file}): busy ${s.busyMs} ms of ${s.totalMs} ms profiled (${((s.busyMs / s.totalMs) * 100).toFixed(0)}% of one core)`,
      '',
      '| # | function | where | self ms | % of busy |',
      '| -: | --- | --- | -: | -: |',
      ...s.top.map(
        (t, i) => `| ${i + 1} | \`${t.fn}\` | ${t.where || '—'} | ${t.selfMs} | ${t.pctOfBusy} |`,
      ),
      '',
      '| module | self ms | % of busy |',
      '| --- | -: | -: |',
      ...s.modules.map((m) => `| ${m.module} | ${m.selfMs} | ${m.pctOfBusy} |`),
      '',
    );
  }
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write(
      'usage: tsx bench/profile-summary.ts <dir with .cpuprofile files> [topN]\n',
    );
    process.exit(2);
  }
  const summaries = await summarizeDir(dir, Number(process.argv[3] ?? 10));
  process.stdout.write(profileMarkdown(summaries));
}
