import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SERVICES } from '../core/config.js';
import { passingInstances } from './consul-agent.js';

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
  const ours = new Set<string>(SERVICES);
  const instances = (await passingInstances(consulAddr))
    .filter((instance) => ours.has(instance.service))
    .map((instance) => instance.id);
  if (instances.length === 0) return;
  throw new Error(
    `the Consul agent at ${consulAddr} already has a push-cluster (${[...new Set(instances)]
      .sort()
      .join(', ')} passing): a second cluster in it would take messages of the first one. ` +
      `Stop that one, or start this one apart from it: ${APART}`,
  );
}

/**
 * Claims the SQLite file for this launcher: a file beside it names the launcher (its pid and
 * start time) until it exits. Throws when a running launcher holds it; a claim left by one
 * that was killed (its pid gone, or now another process's) is taken over. Returns the
 * release.
 *
 * The claim is written whole before it appears (a file linked into place), so another
 * launcher never reads it empty and takes it for one left behind.
 */
export function claimStore(sqlitePath: string): () => void {
  const store = resolve(sqlitePath);
  const claim = `${store}.launcher-pid`;
  const mine = holderLine(process.pid);
  mkdirSync(dirname(claim), { recursive: true });
  const draft = `${claim}.${process.pid}`;
  writeFileSync(draft, mine);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(draft, claim);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const held = readText(claim);
      if (attempt < 3 && !isRunning(held)) {
        // Gone since it was read: another newcomer took it over first, and holds it now.
        if (readText(claim) === held) removeStale(claim);
        continue;
      }
      throw new Error(
        `the message store ${sqlitePath} is in use by the cluster of launcher pid ` +
          `${held.split(' ')[0]?.trim() || '?'}: stop that one, or start this one apart ` +
          `from it: ${APART}`,
      );
    }
  } finally {
    unlinkQuietly(draft);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (readText(claim) === mine) unlinkQuietly(claim);
  };
}

/** "<pid> <start time>": the start time (clock ticks after boot, from /proc) tells the
 *  process from a later one given the same pid; empty where there is no /proc. */
function holderLine(pid: number): string {
  return `${pid} ${startTimeOf(pid) ?? ''}\n`;
}

function startTimeOf(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  // Field 22; the fields are counted after the command name, which may hold spaces.
  return stat ? stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] : undefined;
}

/** Whether the claim names a process that still runs: its pid, started when it says. */
function isRunning(held: string): boolean {
  const [pidText = '', started = ''] = held.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it runs, as another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = startTimeOf(pid);
  return started === '' || now === undefined || now === started;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Removes a claim left behind; says so when it cannot (a folder in its place, say). */
function removeStale(claim: string): void {
  try {
    unlinkSync(claim);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new Error(
      `${claim} is left from a launcher that is gone, but cannot be removed ` +
        `(${(err as Error).message}): remove it`,
    );
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}
