// Row 14: `npm start`'s launcher (node dist/cli.js cluster, LAUNCHER_PORTS=free) with two
// push nodes, library clients and a steady load; one push node SIGKILLed. The rest keeps
// serving (users on the other node keep getting their messages), the launcher restarts
// the node and it is passing in Consul again; nothing is lost.
import { join } from 'node:path';
import { DEV_SECRETS } from '../../../src/core/config.js';
import { PROJECT_ROOT } from '../../../src/launcher/binaries.js';
import { Child, waitFor } from '../../../src/launcher/child.js';
import { LoadGenerator } from '../../support/load.js';
import {
  LibClients,
  passingIds,
  quick,
  settleInboxes,
  sleep,
  timeUntil,
  type Fault,
} from '../common.js';

interface Launched {
  consulAddr: string;
  ingest: string;
  auth: string;
  connect: string;
  /** name (push-1, …) → pid */
  pids: Map<string, number>;
  pushPorts: number[];
}

/** Reads what the launcher prints once the cluster is up. */
function parseBanner(text: string): Launched {
  const field = (label: string): string => {
    const m = new RegExp(`^\\s*${label}\\s+(\\S.*)$`, 'm').exec(text);
    if (!m) throw new Error(`the launcher printed no "${label}" line:\n${text}`);
    return m[1]!.trim();
  };
  const pids = new Map<string, number>();
  for (const part of field('processes').split(',')) {
    const [name, pid] = part.trim().split(/\s+/);
    if (name && pid) pids.set(name, Number(pid));
  }
  return {
    consulAddr: new URL(field('Consul UI')).host,
    ingest: new URL(field('ingest API')).origin,
    auth: new URL(field('auth API')).origin,
    connect: field('connect URL'),
    pids,
    pushPorts: field('push nodes')
      .split(/\s+/)
      .map((u) => Number(new URL(u).port)),
  };
}

export const launcherFault: Fault = {
  name: '14. npm start (launcher): SIGKILL push-1',
  async run({ sqlitePath }) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.CONSUL_HTTP_ADDR;
    delete env.REDIS_URL;
    const lines: string[] = [];
    const launcher = new Child(
      'launcher',
      process.execPath,
      [join(PROJECT_ROOT, 'dist', 'cli.js'), 'cluster'],
      {
        env: {
          ...env,
          LAUNCHER_PORTS: 'free',
          PUSH_NODES: '2',
          SQLITE_PATH: sqlitePath,
          ACK_TIMEOUT: '3s',
          LOG_LEVEL: 'warn',
          NODE_ENV: 'development',
        },
        echo: (line) => lines.push(line),
      },
    );
    let lib: LibClients | undefined;
    let gen: LoadGenerator | undefined;
    try {
      await waitFor(
        'the launcher to say the cluster is up',
        () => {
          if (!launcher.running) throw new Error(`launcher exited:\n${lines.join('\n')}`);
          return lines.some((l) => l.startsWith('Ctrl-C stops everything'));
        },
        90_000,
        100,
      );
      const up = parseBanner(lines.join('\n'));
      const users = Array.from({ length: quick ? 20 : 50 }, (_, i) => `launcher-user-${i}`);
      lib = new LibClients(up.connect, async (userId) => {
        const res = await fetch(`${up.auth}/v1/tokens`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${DEV_SECRETS.AUTH_ADMIN_KEY}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ userId, ttlSeconds: 3600 }),
        });
        return ((await res.json()) as { token: string }).token;
      });
      await lib.start(users);
      gen = new LoadGenerator(() => up.ingest, users, quick ? 50 : 100);
      gen.start();
      await sleep(2000);
      const [victimPort, otherPort] = up.pushPorts as [number, number];
      const victimId = `push-1-${victimPort}`;
      const survivors = new Set(lib.usersOn(otherPort));
      const pid = up.pids.get('push-1');
      if (!pid) throw new Error(`no pid for push-1 in: ${[...up.pids].join(' ')}`);
      const killedAt = Date.now();
      const t0 = performance.now();
      process.kill(pid, 'SIGKILL');
      const isPassing = async (): Promise<boolean> =>
        (await passingIds(up.consulAddr, 'push')).has(victimId);
      const detectedMs = await timeUntil(async () => !(await isPassing()), 15_000, t0);
      const recoveredMs = await timeUntil(isPassing, 45_000, t0);
      const backAt = Date.now();
      await sleep(2000);
      await gen.stop();
      const inbox = (u: string) => lib?.inboxes.get(u);
      const outcome = await settleInboxes(gen.sent, inbox, 45_000);
      // The rest keeps serving: messages to users on the other node, sent while push-1
      // was down, and how long the slowest took.
      const during = gen.sent.filter(
        (s) => survivors.has(s.to) && s.at >= killedAt && s.at <= backAt,
      );
      const late = during.map((s) => (inbox(s.to)?.firstAt.get(s.id) ?? Infinity) - s.at);
      const worst = late.length ? Math.max(...late) : 0;
      const restarted = lines.find((l) => l.includes('push-1 restarted'));
      return {
        detectedMs,
        recoveredMs,
        ...outcome,
        note:
          `recovered = push-1 passing again${restarted ? '' : ' (no restart line seen)'}; ` +
          `${survivors.size} users on push-2 got ${during.length} messages sent meanwhile, ` +
          `slowest ${worst === Infinity ? 'never' : `${worst} ms`}`,
        problem:
          recoveredMs === undefined
            ? 'push-1 not passing again within 45 s'
            : worst > 5000
              ? 'users on push-2 waited over 5 s while push-1 was down'
              : undefined,
      };
    } finally {
      await gen?.stop();
      lib?.stop();
      await launcher.stop(30_000);
    }
  },
};
