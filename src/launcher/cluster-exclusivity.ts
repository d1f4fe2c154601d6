import { mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SERVICES } from '../core/config.js';

/**
 * One local cluster per Consul agent and per message store. A second `npm start` used to
 * join the first one's Consul agent and open its SQLite file: the first cluster's collect
 * then handed half of its messages to the second one's dispatch, which looks users up in
 * another Redis, found no route, and left them to wait for their user's next connect while
 * the user stayed connected to the first cluster (50 of 100 messages, 27 still after 20 s).
 * Two clusters that share a store do the same through the sweeper.
 */

/** How to start a cluster beside one that runs. */
const APART = 'LAUNCHER_PORTS=free SQLITE_PATH=.data/second.sqlite npm start';

/** Refuses a Consul agent in which instances of our services already pass their checks. */
export async function assertNoClusterIn(consulAddr: string): Promise<void> {
  const res = await fetch(`http://${consulAddr}/v1/health/state/passing`, {
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`the Consul agent at ${consulAddr} answered ${res.status}`);
  const ours = new Set<string>(SERVICES);
  const instances = ((await res.json()) as { ServiceName: string; ServiceID: string }[])
    .filter((check) => ours.has(check.ServiceName))
    .map((check) => check.ServiceID);
  if (instances.length === 0) return;
  throw new Error(
    `the Consul agent at ${consulAddr} already has a push-cluster (${[...new Set(instances)]
      .sort()
      .join(', ')} passing): a second cluster in it would take messages of the first one. ` +
      `Stop that one, or start this one apart from it: ${APART}`,
  );
}

/**
 * Claims the SQLite file for this launcher: a file beside it holds the launcher's pid until
 * it exits. Throws when a running launcher holds it; a claim left by one that was killed
 * (its pid gone, or now another program's) is taken over. Returns the release.
 */
export function claimStore(sqlitePath: string): () => void {
  const store = resolve(sqlitePath);
  const claim = `${store}.launcher-pid`;
  mkdirSync(dirname(claim), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(claim, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readText(claim).trim());
      if (attempt === 0 && !isLauncher(holder)) {
        unlinkQuietly(claim);
        continue;
      }
      throw new Error(
        `the message store ${sqlitePath} is in use by the cluster of launcher pid ${holder}: ` +
          `stop that one, or start this one apart from it: ${APART}`,
      );
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (readText(claim).trim() === String(process.pid)) unlinkQuietly(claim);
  };
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

/** Whether `pid` is a running launcher (`cli.js cluster`). Without /proc, whether it runs. */
function isLauncher(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it runs, as another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return true;
  }
  const args = cmdline.split('\0');
  return args.includes('cluster') && args.some((a) => a.endsWith('cli.js'));
}
