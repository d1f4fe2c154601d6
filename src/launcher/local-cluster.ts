import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import getPort from 'get-port';
import {
  DEFAULT_PORTS,
  DEFAULT_SQLITE_PATH,
  DEV_SECRETS,
  type ServiceName,
} from '../core/config.js';
import { createDemoServer } from '../demo/demo-server.js';
import { PROJECT_ROOT } from './binaries.js';
import { Child, TIED_TO_LAUNCHER, waitFor } from './child.js';
import { assertNoClusterIn, claimStore } from './cluster-exclusivity.js';
import { serviceNodeOptions } from './node-options.js';
import { passingInstances, startConsulAgent } from './consul-agent.js';
import { startRedisServer } from './redis-server.js';
import { Supervised } from './supervisor.js';

const CLI = join(PROJECT_ROOT, 'dist', 'cli.js');

interface ServiceProcess {
  service: ServiceName;
  name: string;
  port: number;
  sup: Supervised;
}

/**
 * `npm start`: a whole cluster on this machine, each service its own process, every
 * one registered in Consul. Uses the Consul agent at CONSUL_HTTP_ADDR and the Redis at
 * REDIS_URL when they are given (or answering), else starts its own.
 *
 * It supervises what it started: a process that dies is restarted with backoff on the
 * same port, as the same Consul instance (RESTART_SERVICES=0: reported only). SIGINT,
 * SIGTERM or SIGHUP stop everything it started, services first (they drain), then Redis
 * and Consul; a second one kills them at once. Its children run in their own process
 * group and, on Linux, are killed by the kernel when the launcher dies (child.ts).
 */
export async function runLocalCluster(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  // Output piped into something that ended (`npm start | tee log`, then Ctrl-C): carry on
  // stopping without it rather than die of EPIPE and leave the children to the kernel.
  let outputGone = false;
  process.stdout.on('error', () => (outputGone = true));
  const write = (text: string): void => void (outputGone || process.stdout.write(text));
  const say = (line: string): void => write(`${line}\n`);
  const note = (line: string): void => say(`[launcher] ${line}`);
  const pushCount = Number(env.PUSH_NODES ?? 2);
  if (!Number.isInteger(pushCount) || pushCount < 1 || pushCount > 32)
    throw new Error(`PUSH_NODES must be 1..32, got ${env.PUSH_NODES}`);
  const portsMode = env.LAUNCHER_PORTS ?? 'default';
  if (portsMode !== 'default' && portsMode !== 'free')
    throw new Error(`LAUNCHER_PORTS must be "default" or "free", got "${portsMode}"`);
  const restart = env.RESTART_SERVICES !== '0';

  // The usual port when free (LAUNCHER_PORTS=default), else any free port; each is
  // reserved, so that no later pick (a Consul agent's own ports too) gets it again.
  const pickPort = (usual: number): Promise<number> =>
    getPort({ port: portsMode === 'default' ? usual : undefined, reserve: true });

  let consul: Supervised | undefined;
  let redis: Supervised | undefined;
  const services: ServiceProcess[] = [];
  let stopping = false;

  const stopAll = async (): Promise<void> => {
    stopping = true;
    say('\nstopping the cluster… (again to kill everything at once)');
    const order: ServiceName[] = ['push', 'dispatch', 'collect', 'auth'];
    const groups = [
      ...order.map((svc) => services.filter((s) => s.service === svc).map((s) => s.sup)),
      [redis],
      [consul],
    ];
    for (const group of groups) {
      const present = group.filter((p) => p !== undefined);
      if (present.length === 0) continue;
      await Promise.all(present.map((p) => p.stop()));
      say(`  stopped ${present.map((p) => p.name).join(', ')}`);
    }
    say('stopped.');
  };
  const killAll = (): void => {
    for (const p of [...services.map((s) => s.sup), redis, consul]) p?.kill();
    say('killed everything this command started.');
  };
  const onSignal = (): void => {
    if (!stopping) return void stopAll().then(() => process.exit(0));
    killAll();
    process.exit(1);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
  // Under npm the launcher runs in `sh -c`: when npm or that shell is killed, the launcher
  // is left to init. A launcher whose parent is gone stops too.
  const parent = process.ppid;
  setInterval(() => {
    if (stopping || process.ppid === parent) return;
    note(`its parent process (pid ${parent}) is gone: stopping`);
    void stopAll().then(() => process.exit(0));
  }, 500).unref();

  const sqlitePath = env.SQLITE_PATH ?? DEFAULT_SQLITE_PATH;
  try {
    // ---- the store, Consul and Redis: none shared with another cluster ------------
    if (!env.MONGODB_URL && sqlitePath !== ':memory:') process.on('exit', claimStore(sqlitePath));
    let consulAddr = env.CONSUL_HTTP_ADDR ?? '127.0.0.1:8500';
    const backing = async (): Promise<void> => {
      if (redisUrl) await registerBackingService(consulAddr, 'redis', new URL(redisUrl));
      if (env.MONGODB_URL) {
        const first = /^mongodb(?:\+srv)?:\/\/(?:[^@/]*@)?([^/,?]+)/.exec(env.MONGODB_URL)?.[1];
        if (first)
          await registerBackingService(consulAddr, 'mongodb', new URL(`mongodb://${first}`));
      }
    };
    if ((env.CONSUL_HTTP_ADDR || portsMode === 'default') && (await consulAnswers(consulAddr))) {
      await assertNoClusterIn(consulAddr);
      say(`using the Consul agent at ${consulAddr}`);
    } else if (env.CONSUL_HTTP_ADDR) {
      throw new Error(`CONSUL_HTTP_ADDR=${env.CONSUL_HTTP_ADDR} does not answer`);
    } else {
      const agent = await startConsulAgent({
        httpPort: await pickPort(8500),
        ui: true,
        configDirs: [join(PROJECT_ROOT, 'consul.d', 'dev')],
        nodeName: 'local',
        tiedToLauncher: true,
      });
      // A restarted dev agent comes back empty: services re-register by themselves
      // (CONSUL_SYNC_INTERVAL), Redis and MongoDB are registered again here.
      consul = new Supervised('consul', agent, { restart, say: note, afterRestart: backing });
      consulAddr = agent.addr;
      say(`started a Consul dev agent at ${consulAddr}`);
    }
    let redisUrl = env.REDIS_URL;
    if (!redisUrl) {
      const server = await startRedisServer({
        port: await pickPort(6379),
        tiedToLauncher: true,
      });
      redis = new Supervised('redis-server', server, { restart, say: note });
      redisUrl = server.url;
      say(`started redis-server at ${redisUrl}`);
    }
    await backing();

    // ---- services --------------------------------------------------------------
    const childEnv: NodeJS.ProcessEnv = {
      ...env,
      CONSUL_HTTP_ADDR: consulAddr,
      REDIS_URL: redisUrl,
      LOG_LEVEL: env.LOG_LEVEL ?? 'warn',
      NODE_ENV: env.NODE_ENV ?? 'development',
      // V8's young generation capped (node-options.ts), unless NODE_OPTIONS sets it.
      NODE_OPTIONS: serviceNodeOptions(env.NODE_OPTIONS),
    };
    const plan: { service: ServiceName; name: string; want: number }[] = [
      { service: 'auth', name: 'auth', want: DEFAULT_PORTS.auth },
      { service: 'collect', name: 'collect', want: DEFAULT_PORTS.collect },
      { service: 'dispatch', name: 'dispatch', want: DEFAULT_PORTS.dispatch },
      ...Array.from({ length: pushCount }, (_, i) => ({
        service: 'push' as const,
        name: `push-${i + 1}`,
        want: DEFAULT_PORTS.push + i,
      })),
    ];
    for (const p of plan) {
      const port = await pickPort(p.want);
      // The same port and INSTANCE_ID on every restart: the same instance in Consul.
      const spawnOne = (): Child =>
        new Child(p.name, process.execPath, [CLI, p.service, '--port', String(port)], {
          env: { ...childEnv, INSTANCE_ID: `${p.name}-${port}` },
          echo: (line) => write(`[${p.name}] ${line}\n`),
          tiedToLauncher: true,
        });
      const target = {
        child: spawnOne(),
        async restart() {
          target.child = spawnOne();
        },
        stop: () => target.child.stop(12_000),
      };
      services.push({ ...p, port, sup: new Supervised(p.name, target, { restart, say: note }) });
    }
    // A service that exits before it passes (a configuration error: exit 78) ends the wait
    // at once: nothing restarts it yet, so waiting out the timeout only hid the reason.
    const exited = (): ServiceProcess | undefined =>
      services.find(({ sup }) => !sup.target.child.running);
    await waitFor(
      'every service registered and passing in Consul',
      async () => {
        if (exited()) return true;
        const passing = new Set((await passingInstances(consulAddr)).map((i) => i.id));
        return services.every((s) => passing.has(`${s.name}-${s.port}`));
      },
      30_000,
      200,
    );
    const gone = exited();
    if (gone) throw new Error(`${gone.name} exited:\n${gone.sup.target.child.recentOutput()}`);

    const port = (svc: ServiceName): number => services.find((s) => s.service === svc)?.port ?? 0;
    const ingest = `http://127.0.0.1:${port('collect')}`;
    const auth = `http://127.0.0.1:${port('auth')}`;
    const connect = `http://127.0.0.1:${port('dispatch')}/v1/connect`;
    const adminKey = env.AUTH_ADMIN_KEY ?? DEV_SECRETS.AUTH_ADMIN_KEY;
    const ingestKey = env.INGEST_API_KEY ?? DEV_SECRETS.INGEST_API_KEY;
    let demoUrl = 'off (NODE_ENV=production)';
    if (childEnv.NODE_ENV !== 'production') {
      const demo = createDemoServer({
        authUrl: auth,
        collectUrl: ingest,
        dispatchUrl: `http://127.0.0.1:${port('dispatch')}`,
        adminKey,
        ingestKey,
      });
      const demoPort = await pickPort(7000);
      await new Promise<void>((resolve) => demo.listen(demoPort, '127.0.0.1', resolve));
      demo.unref();
      demoUrl = `http://127.0.0.1:${demoPort}/`;
    }
    const secretNote = (name: keyof typeof DEV_SECRETS): string =>
      env[name] ? '(from the environment)' : '(development value)';
    // In the examples, a key from the environment is "$NAME" inside double quotes, so that
    // the shell one pastes into expands it; a development value is written out.
    const keyRef = (name: 'AUTH_ADMIN_KEY' | 'INGEST_API_KEY'): string =>
      env[name] ? `$${name}` : DEV_SECRETS[name];
    const fromEnv = (['AUTH_ADMIN_KEY', 'INGEST_API_KEY'] as const).filter((n) => env[n]);
    const processes = [
      ...(consul ? [`consul ${consul.pid}`] : []),
      ...(redis ? [`redis-server ${redis.pid}`] : []),
      ...services.map((s) => `${s.name} ${s.sup.pid}`),
    ].join(', ');
    say(`
push-cluster is up: ${services.length} services, all passing in Consul.

  Consul UI      http://${consulAddr}/ui/
  demo page      ${demoUrl}
  ingest API     ${ingest}/v1/messages
  auth API       ${auth}/v1/tokens
  connect URL    ${connect}
  push nodes     ${services
    .filter((s) => s.service === 'push')
    .map((s) => `ws://127.0.0.1:${s.port}/ws`)
    .join('  ')}
  message store  ${env.MONGODB_URL ? 'MongoDB' : `SQLite, ${sqlitePath} (set MONGODB_URL for replicated storage)`}
  processes      ${processes}

  AUTH_ADMIN_KEY ${env.AUTH_ADMIN_KEY ? '***' : adminKey} ${secretNote('AUTH_ADMIN_KEY')}
  INGEST_API_KEY ${env.INGEST_API_KEY ? '***' : ingestKey} ${secretNote('INGEST_API_KEY')}

Try it${fromEnv.length ? ` (in a shell where ${fromEnv.join(' and ')} ${fromEnv.length > 1 ? 'are' : 'is'} set, as here)` : ''}:
  # 1. a token for user alice
  TOKEN=$(curl -s -X POST ${auth}/v1/tokens -H "Authorization: Bearer ${keyRef('AUTH_ADMIN_KEY')}" \\
    -H 'Content-Type: application/json' -d '{"userId":"alice"}' | node -pe 'JSON.parse(require("fs").readFileSync(0)).token')
  # 2. connect as alice (leave it running in one terminal)
  node --experimental-websocket -e 'fetch("${connect}").then(r=>r.json()).then(({url})=>{const ws=new WebSocket(url+"?token="+process.argv[1]);ws.onmessage=e=>{console.log(e.data);const m=JSON.parse(e.data);if(m.type==="message")ws.send(JSON.stringify({type:"ack",id:m.id}))}})' "$TOKEN"
  # 3. send alice a message
  curl -s -X POST ${ingest}/v1/messages -H "Authorization: Bearer ${keyRef('INGEST_API_KEY')}" \\
    -H 'Content-Type: application/json' -d '{"to":"alice","payload":{"text":"hello"}}'

Ctrl-C stops everything this command started. ${
      restart
        ? 'A process that dies is restarted (RESTART_SERVICES=0 turns this off).'
        : 'RESTART_SERVICES=0: a process that dies is not restarted.'
    }${TIED_TO_LAUNCHER ? '' : '\nsetpriv not found: if this command is killed by SIGKILL, stop its processes by hand.'}`);
    // From now on a process that exits is reported and restarted, not fatal.
    for (const p of [consul, redis, ...services.map((s) => s.sup)]) p?.watch();
  } catch (err) {
    say(`npm start failed: ${(err as Error).message}`);
    await stopAll();
    process.exit(1);
  }
}

async function consulAnswers(addr: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${addr.replace(/^https?:\/\//, '')}/v1/status/leader`, {
      signal: AbortSignal.timeout(1000),
    });
    return res.ok;
  } catch {
    return false;
  }
}

/** Registers Redis or MongoDB with the agent from its definition in consul.d/services, at its real address. */
async function registerBackingService(
  consulAddr: string,
  name: 'redis' | 'mongodb',
  url: URL,
): Promise<void> {
  interface Definition {
    id: string;
    name: string;
    tags: string[];
    port: number;
    meta: Record<string, string>;
    check: { id: string; name: string; interval: string; timeout: string };
  }
  const file = join(PROJECT_ROOT, 'consul.d', 'services', `${name}.json`);
  const def = (JSON.parse(readFileSync(file, 'utf8')) as { service: Definition }).service;
  const port = Number(url.port) || def.port;
  // The agent API takes the same definition as the config file, spelled its own way.
  const body = {
    ID: def.id,
    Name: def.name,
    Tags: def.tags,
    Address: url.hostname,
    Port: port,
    Meta: def.meta,
    Check: {
      CheckID: def.check.id,
      Name: def.check.name,
      TCP: `${url.hostname}:${port}`,
      Interval: def.check.interval,
      Timeout: def.check.timeout,
    },
  };
  const res = await fetch(`http://${consulAddr}/v1/agent/service/register`, {
    method: 'PUT',
    body: JSON.stringify(body),
  });
  if (!res.ok)
    throw new Error(`could not register ${name} in Consul: ${res.status} ${await res.text()}`);
}
