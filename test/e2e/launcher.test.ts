import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { Child, TIED_TO_LAUNCHER, waitFor } from '../../src/launcher/child.js';
import { Supervised } from '../../src/launcher/supervisor.js';
import { checkStatus } from '../support/consul-http.js';

/**
 * `npm start` itself: `node dist/cli.js cluster` as a newcomer runs it, with every port
 * free (LAUNCHER_PORTS=free) so it never meets a cluster a developer is running.
 */

const CLI = join(PROJECT_ROOT, 'dist', 'cli.js');
const KEYS = { AUTH_ADMIN_KEY: 'e2e-admin-key-42', INGEST_API_KEY: 'e2e-ingest-key-42' };
const dataDir = mkdtempSync(join(tmpdir(), 'launcher-e2e-'));

class Launcher {
  readonly proc: ChildProcess;
  output = '';
  exited: Promise<number | null>;

  constructor(env: Record<string, string> = {}) {
    this.proc = spawn(process.execPath, [CLI, 'cluster'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '',
        ...(process.env.CONSUL_BIN ? { CONSUL_BIN: process.env.CONSUL_BIN } : {}),
        ...(process.env.REDIS_SERVER_BIN ? { REDIS_SERVER_BIN: process.env.REDIS_SERVER_BIN } : {}),
        LAUNCHER_PORTS: 'free',
        SQLITE_PATH: join(dataDir, `messages-${Date.now()}.sqlite`),
        ...env,
      },
    });
    const keep = (chunk: Buffer): void => {
      this.output += chunk.toString('utf8');
      if (process.env.TEST_LOG_LEVEL) process.stdout.write(chunk);
    };
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async up(): Promise<void> {
    try {
      await waitFor(
        "the launcher's table",
        () => {
          if (!this.running) throw new Error('the launcher exited');
          return this.output.includes('Ctrl-C stops everything');
        },
        80_000,
        100,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; its output:\n${this.output}`);
    }
  }

  /** The value printed after `label` in the table. */
  field(label: string): string {
    const m = new RegExp(`^  ${label} +(.+)$`, 'm').exec(this.output);
    if (!m) throw new Error(`no "${label}" line in:\n${this.output}`);
    return m[1]!;
  }

  /** name → pid, from the table's processes line. */
  pids(): Map<string, number> {
    const entries = this.field('processes')
      .split(', ')
      .map((e) => e.split(' '))
      .map(([name, pid]) => [name!, Number(pid)] as const);
    return new Map(entries);
  }

  /** Every process below the launcher, children and theirs. */
  descendants(): number[] {
    const found: number[] = [];
    const queue = [this.pid];
    for (let i = 0; i < queue.length && i < 1000; i++) {
      for (const pid of childrenOf(queue[i]!)) {
        found.push(pid);
        queue.push(pid);
      }
    }
    return found;
  }

  /** Ends the launcher and whatever is left of its processes, for the clean-up. */
  async kill(): Promise<void> {
    const left = this.running ? this.descendants() : [];
    this.proc.kill('SIGKILL');
    for (const pid of left) signal(pid, 'SIGKILL');
    await this.exited;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there is none
  }
}

/** Running, or stopped: a zombie waiting for init to reap it counts as gone. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

async function healthStatus(url: string): Promise<number> {
  try {
    return (await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) })).status;
  } catch {
    return -1; // no answer
  }
}

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('npm start (restarts on, keys from the environment)', () => {
  let launcher: Launcher;

  beforeAll(async () => {
    launcher = new Launcher({ ...KEYS, CONSUL_SYNC_INTERVAL: '1s' });
    await launcher.up();
  }, 100_000);

  afterAll(async () => {
    await launcher?.kill();
  });

  it('keeps the rest answering while a SIGKILLed push node is restarted as the same Consul instance', async () => {
    const consulAddr = new URL(launcher.field('Consul UI')).host;
    const pushUrls = launcher
      .field('push nodes')
      .split(/\s+/)
      .map((u) => u.replace(/^ws:/, 'http:').replace(/\/ws$/, ''));
    const victimPort = new URL(pushUrls[0]!).port;
    const others = [
      new URL(launcher.field('auth API')).origin,
      new URL(launcher.field('ingest API')).origin,
      new URL(launcher.field('connect URL')).origin,
      ...pushUrls.slice(1),
    ];
    const victimPid = launcher.pids().get('push-1')!;
    expect(alive(victimPid)).toBe(true);

    process.kill(victimPid, 'SIGKILL');
    let sawCritical = false;
    const notOk: string[] = [];
    await waitFor(
      'push-1 restarted and passing again in Consul',
      async () => {
        for (const url of others) {
          const status = await healthStatus(url);
          if (status !== 200) notOk.push(`${url}/health → ${status}`);
        }
        const status = await checkStatus(consulAddr, 'push', `push-1-${victimPort}`);
        if (status === 'critical') sawCritical = true;
        return sawCritical && status === 'passing';
      },
      30_000,
      100,
    );
    expect(notOk).toEqual([]);
    expect(launcher.running).toBe(true);
    expect(launcher.output).toContain(`push-1 (pid ${victimPid}) was killed by SIGKILL`);
    const restarted = /push-1 restarted \(pid (\d+)\)/.exec(launcher.output);
    expect(restarted).not.toBeNull();
    const newPid = Number(restarted![1]);
    expect(newPid).not.toBe(victimPid);
    expect(alive(newPid)).toBe(true);
    expect(launcher.descendants()).toContain(newPid);
  }, 45_000);

  it('prints examples that mint a token, connect and send when pasted into bash with the keys in its environment', async () => {
    const text = launcher.output;
    expect(text).toContain('"Authorization: Bearer $AUTH_ADMIN_KEY"');
    expect(text).toContain('"Authorization: Bearer $INGEST_API_KEY"');
    expect(text).not.toContain(KEYS.AUTH_ADMIN_KEY);
    const steps = examples(text);
    const shellEnv = { PATH: process.env.PATH ?? '', ...KEYS };

    const token = execFileSync('bash', ['-c', `${steps[1]}\nprintf %s "$TOKEN"`], {
      env: shellEnv,
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(token.split('.')).toHaveLength(3); // a JWT

    const listener = spawn('bash', ['-c', steps[2]!], {
      env: { ...shellEnv, TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let heard = '';
    listener.stdout.on('data', (c: Buffer) => (heard += c.toString('utf8')));
    listener.stderr.on('data', (c: Buffer) => (heard += c.toString('utf8')));
    try {
      const sent = execFileSync('bash', ['-c', steps[3]!], {
        env: shellEnv,
        encoding: 'utf8',
        timeout: 15_000,
      });
      const { ids } = JSON.parse(sent) as { ids: string[] };
      expect(ids).toHaveLength(1);
      // Live if the socket was already open, else replayed when it opens: either way, once.
      await waitFor(
        `the pasted listener to print message ${ids[0]}`,
        () => heard.includes(`"id":"${ids[0]}"`) && heard.includes('"text":"hello"'),
        15_000,
      );
    } finally {
      listener.kill('SIGTERM');
    }
  }, 45_000);

  it('refuses to start a second cluster in its Consul agent or on its store, and the first one carries on', async () => {
    const consulAddr = new URL(launcher.field('Consul UI')).host;
    const store = /^SQLite, (\S+) /.exec(launcher.field('message store'))![1]!;
    const collect = new URL(launcher.field('ingest API')).origin;
    // Joined, the first cluster's collect handed messages to the second one's dispatch, which
    // knew none of its routes: they waited for their user's next connect.
    const inConsul = new Launcher({ ...KEYS, CONSUL_HTTP_ADDR: consulAddr });
    expect(await inConsul.exited).toBe(1);
    expect(inConsul.output).toContain(
      `npm start failed: the Consul agent at ${consulAddr} already has a push-cluster (`,
    );
    expect(inConsul.output).toContain('LAUNCHER_PORTS=free SQLITE_PATH=');
    // With its own Consul and Redis but the same SQLite file, the sweepers would share it.
    const onStore = new Launcher({ ...KEYS, SQLITE_PATH: store });
    expect(await onStore.exited).toBe(1);
    expect(onStore.output).toContain(
      `npm start failed: the message store ${store} is in use by the cluster of launcher pid ${launcher.pid}`,
    );
    // Each refused before it started anything, and left the first one's claim alone.
    for (const refused of [inConsul, onStore]) {
      expect(refused.output).not.toMatch(/started (redis-server|a Consul dev agent)/);
    }
    expect(readFileSync(`${store}.launcher-pid`, 'utf8')).toMatch(
      new RegExp(`^${launcher.pid} \\d+\\n$`),
    );
    expect(await healthStatus(collect)).toBe(200);
  }, 90_000);

  it('stops with the reason when a service refuses its configuration, not after waiting for it', async () => {
    const refused = new Launcher({ ...KEYS, ACK_TIMEOUT: '2m' });
    expect(await refused.exited).toBe(1);
    expect(refused.output).toMatch(
      /npm start failed: \S+ exited:\n.*ACK_RETRY_MAX \(60000 ms\) must be at least ACK_TIMEOUT/,
    );
    // Before, it waited 30 s for the services to pass and then blamed the wait.
    expect(refused.output).not.toContain('timed out after');
  }, 90_000);

  it('stops every process it started on SIGTERM, services before Redis and Consul', async () => {
    const started = launcher.descendants();
    const pids = launcher.pids();
    expect(started.length).toBeGreaterThanOrEqual(7); // consul, redis, auth, collect, dispatch, 2 push
    for (const [name, pid] of pids) if (name !== 'push-1') expect(started).toContain(pid);

    launcher.proc.kill('SIGTERM');
    const code = await Promise.race([
      launcher.exited,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('the launcher did not exit within 40 s')), 40_000),
      ),
    ]);
    expect(code).toBe(0);
    expect(started.filter(alive)).toEqual([]);
    const stopped = [...launcher.output.matchAll(/^ {2}stopped (.+)$/gm)].map((m) => m[1]);
    expect(stopped).toEqual([
      'push-1, push-2',
      'dispatch',
      'collect',
      'auth',
      'redis-server',
      'consul',
    ]);
    expect(launcher.output).toContain('stopped.');
  }, 50_000);
});

describe('npm start with RESTART_SERVICES=0, then SIGKILLed', () => {
  let launcher: Launcher;

  beforeAll(async () => {
    launcher = new Launcher({ RESTART_SERVICES: '0', PUSH_NODES: '2' });
    await launcher.up();
  }, 100_000);

  afterAll(async () => {
    await launcher?.kill();
  });

  it('reports a dead push node, leaves it down and keeps the rest running', async () => {
    const victimPid = launcher.pids().get('push-1')!;
    const survivor = launcher
      .field('push nodes')
      .split(/\s+/)[1]!
      .replace(/^ws:/, 'http:')
      .replace(/\/ws$/, '');
    process.kill(victimPid, 'SIGKILL');
    await waitFor('the launcher to report push-1 as not restarted', () =>
      launcher.output.includes('push-1 is not restarted'),
    );
    expect(launcher.running).toBe(true);
    expect(await healthStatus(survivor)).toBe(200);
    expect(await healthStatus(new URL(launcher.field('ingest API')).origin)).toBe(200);
    expect(launcher.output).not.toContain('push-1 restarted');
  });

  it.skipIf(!TIED_TO_LAUNCHER)(
    'leaves no process behind when the launcher itself is SIGKILLed',
    async () => {
      const started = launcher.descendants();
      expect(started.length).toBeGreaterThanOrEqual(6);
      launcher.proc.kill('SIGKILL');
      await launcher.exited;
      await waitFor(
        `every process the launcher started to exit (${started.join(', ')})`,
        () => started.every((pid) => !alive(pid)),
        10_000,
        100,
      );
    },
    30_000,
  );
});

describe('npm start, Ctrl-C twice', () => {
  it('kills everything at once on the second SIGINT', async () => {
    const launcher = new Launcher({ PUSH_NODES: '1' });
    try {
      await launcher.up();
      const started = launcher.descendants();
      launcher.proc.kill('SIGINT');
      await waitFor('the launcher to start stopping', () =>
        launcher.output.includes('stopping the cluster'),
      );
      launcher.proc.kill('SIGINT');
      expect(await launcher.exited).toBe(1);
      expect(launcher.output).toContain('killed everything this command started');
      // SIGKILL needs no drain: gone within a moment, not after the services' 10 s.
      await waitFor(
        `every process the launcher started to exit (${started.join(', ')})`,
        () => started.every((pid) => !alive(pid)),
        3000,
        50,
      );
    } finally {
      await launcher.kill();
    }
  }, 120_000);
});

describe('restart backoff', () => {
  it('doubles the delay after each quick failure up to the cap, and starts over after a long run', async () => {
    // Four processes that exit at once, then one that runs past resetAfterMs, then one more.
    const scripts = [0, 0, 0, 0, 1200, 0].map((ms) => `setTimeout(() => process.exit(3), ${ms})`);
    let started = 0;
    const spawnNext = (): Child =>
      new Child('crasher', process.execPath, ['-e', scripts[Math.min(started++, 5)]!]);
    const target = {
      child: spawnNext(),
      async restart() {
        target.child = spawnNext();
      },
      stop: () => target.child.stop(1000),
    };
    const said: string[] = [];
    const sup = new Supervised('crasher', target, {
      restart: true,
      say: (line) => said.push(line),
      backoff: { initialMs: 100, maxMs: 400, resetAfterMs: 1000 },
    });
    const delays = (): string[] =>
      said.filter((l) => l.startsWith('restarting')).map((l) => l.split(' in ')[1]!);
    sup.watch();
    try {
      await waitFor(
        'six exits of the crasher, each followed by a restart',
        () => delays().length >= 6,
        15_000,
      );
    } finally {
      await sup.stop();
    }
    expect(delays()).toEqual(['0.1 s', '0.2 s', '0.4 s', '0.4 s', '0.1 s', '0.2 s']);
    expect(said.filter((l) => l.includes('exited with code 3'))).toHaveLength(6);
  }, 30_000);
});

/** The numbered steps of the printed "Try it" block, as one would paste them. */
function examples(text: string): Record<number, string> {
  const block = /^Try it.*:\n([\s\S]*?)\n\n/m.exec(text)?.[1];
  if (!block) throw new Error(`no "Try it" block in:\n${text}`);
  const steps: Record<number, string> = {};
  let current = 0;
  for (const line of block.split('\n')) {
    const step = /^ {2}# (\d+)\./.exec(line);
    if (step) current = Number(step[1]);
    else if (current) steps[current] = `${steps[current] ?? ''}${line.replace(/^ {2}/, '')}\n`;
  }
  return steps;
}
