import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { Child, freePort, waitFor } from '../../src/launcher/child.js';
import { serviceNodeOptions } from '../../src/launcher/node-options.js';
import { DEV_SECRETS, type ServiceName } from '../../src/core/config.js';
import { startDeps, type Deps } from './deps.js';

const CLI = join(PROJECT_ROOT, 'dist', 'cli.js');

export interface ServiceProc {
  service: ServiceName;
  port: number;
  /** Consul ServiceID */
  id: string;
  url: string;
  child: Child;
  env: Record<string, string>;
}

export interface TestCluster {
  deps: Deps;
  auth: ServiceProc;
  collect: ServiceProc;
  dispatch: ServiceProc;
  push: ServiceProc[];
  all(): ServiceProc[];
  /** Starts one more service process, registered and passing before this resolves. */
  spawn(
    service: ServiceName,
    extraEnv?: Record<string, string>,
    port?: number,
  ): Promise<ServiceProc>;
  /** Starts a stopped or killed service again on the same port, as the same instance. */
  restart(proc: ServiceProc): Promise<ServiceProc>;
  stop(): Promise<void>;
}

export const KEYS = DEV_SECRETS;

/**
 * A whole cluster of real processes: a real Consul agent and Redis, then auth,
 * collect, dispatch and push nodes built from dist/, each registered and passing.
 */
export async function startCluster(
  o: { pushNodes?: number; env?: Record<string, string> } = {},
): Promise<TestCluster> {
  const deps = await startDeps();
  const procs: ServiceProc[] = [];
  // Each cluster its own database: messages of one test file never reach another's users.
  const dataDir = mkdtempSync(join(tmpdir(), 'push-cluster-test-'));
  const baseEnv = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'development',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    CONSUL_HTTP_ADDR: deps.consul.addr,
    REDIS_URL: deps.redis.url,
    CONSUL_SYNC_INTERVAL: '1s',
    SQLITE_PATH: join(dataDir, 'messages.sqlite'),
    ...(process.env.MONGODB_URL
      ? { MONGODB_URL: process.env.MONGODB_URL, MONGODB_DB: `push_cluster_e2e_${process.pid}` }
      : {}),
    ...o.env,
    // Given NODE_OPTIONS (the bench's GC or profile hook) keep the cap too: the services run
    // as npm start runs them.
    NODE_OPTIONS: serviceNodeOptions(o.env?.NODE_OPTIONS),
  };

  /** Starts a service; a free port another process took before the service bound it
   *  (other clusters start on this machine too) costs a retry on a new port, not a failure. */
  async function spawn(
    service: ServiceName,
    extraEnv: Record<string, string> = {},
    fixedPort?: number,
  ): Promise<ServiceProc> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await spawnOnce(service, extraEnv, fixedPort);
      } catch (err) {
        if (!(err instanceof PortTaken) || fixedPort !== undefined || attempt >= 3) throw err;
      }
    }
  }

  async function spawnOnce(
    service: ServiceName,
    extraEnv: Record<string, string>,
    fixedPort?: number,
  ): Promise<ServiceProc> {
    const port = fixedPort ?? (await freePort());
    const child = new Child(
      `${service}:${port}`,
      process.execPath,
      [CLI, service, '--port', String(port)],
      {
        env: { ...baseEnv, ...extraEnv },
        echo: process.env.TEST_LOG_LEVEL
          ? (line) => process.stderr.write(`[${service}:${port}] ${line}\n`)
          : undefined,
      },
    );
    const proc: ServiceProc = {
      service,
      port,
      id: `${service}-127.0.0.1-${port}`,
      url: `http://127.0.0.1:${port}`,
      child,
      env: extraEnv,
    };
    procs.push(proc);
    let portTaken = false;
    const registered = waitFor(
      `${service} on port ${port} to pass its health check in Consul`,
      async () => {
        if (!child.running) {
          portTaken = child.recentOutput().includes('EADDRINUSE');
          if (portTaken) return true;
          throw new Error(`${service} exited:\n${child.recentOutput()}`);
        }
        // After a restart under the same ID, Consul may still show the old run's status:
        // the new process must answer its own /health first.
        // Not yet passing: thrown, so that a timeout says why (waitFor keeps the last error).
        const own = await fetch(`${proc.url}/health`);
        if (own.status !== 200) throw new Error(`own /health ${own.status}: ${await own.text()}`);
        const res = await fetch(`http://${deps.consul.addr}/v1/health/checks/${service}`);
        const checks = (await res.json()) as {
          ServiceID: string;
          Status: string;
          Output: string;
        }[];
        // Every check of the instance (two with INTERNAL_PORT): only then is it in the
        // passing set that peers route to.
        const mine = checks.filter((c) => c.ServiceID === proc.id);
        if (mine.length > 0 && mine.every((c) => c.Status === 'passing')) return true;
        throw new Error(
          `consul: ${mine.map((c) => `${c.Status} (${c.Output.trim().slice(0, 160)})`).join('; ') || 'no check yet'}`,
        );
      },
      // The agent writes a check's change to the catalog in its anti-entropy sync. On an idle
      // box that takes 0.2 to 3.3 s after the check passes: 12 fresh agents × 5 services,
      // measured on 2026-11-22. But twice in four clean-clone CI runs that day, a fresh
      // cluster's catalog still said critical after 20 s while the agent said passing. Its
      // log showed no failed sync. The cause is not known; the closing note of that day
      // records it.
      45_000,
      100,
    );
    // On a timeout, say why: the catalog keeps a check's first (empty) output while it stays
    // critical, so ask the agent for each check's latest output, and show Consul's log (a
    // failed sync of the agent's state to the catalog, say).
    await registered.catch(async (err: Error) => {
      const agentChecks = await fetch(`http://${deps.consul.addr}/v1/agent/checks`)
        .then(
          (res) =>
            res.json() as Promise<
              Record<string, { ServiceID: string; Status: string; Output: string }>
            >,
        )
        .then((all) =>
          Object.values(all)
            .filter((c) => c.ServiceID === proc.id)
            .map((c) => `${c.Status}: ${c.Output.trim().slice(0, 300)}`)
            .join('\n'),
        )
        .catch((e: Error) => `(agent did not answer: ${e.message})`);
      // Its last 200 lines: those about this instance or a sync, then the last 30.
      const all = deps.consul.child.recentOutput(200).split('\n');
      const consulLog = [
        ...all.filter((line) => line.includes(proc.id) || /sync/i.test(line)),
        '…',
        ...all.slice(-30),
      ]
        .join('\n')
        .trim();
      throw new Error(
        `${err.message}\nthe agent's checks of ${proc.id}:\n${agentChecks || '(none)'}\n` +
          `consul's recent output:\n${consulLog || '(none)'}`,
      );
    });
    if (portTaken) {
      procs.splice(procs.indexOf(proc), 1);
      throw new PortTaken(`${service}: port ${port} was taken before it could listen`);
    }
    return proc;
  }

  try {
    const [auth, collect, dispatch, ...push] = await Promise.all([
      spawn('auth'),
      spawn('collect'),
      spawn('dispatch'),
      ...Array.from({ length: o.pushNodes ?? 2 }, () => spawn('push')),
    ]);
    return {
      deps,
      auth: auth as ServiceProc,
      collect: collect as ServiceProc,
      dispatch: dispatch as ServiceProc,
      push,
      all: () => procs,
      spawn,
      async restart(proc) {
        await proc.child.stop(12_000);
        procs.splice(procs.indexOf(proc), 1);
        const again = await spawn(proc.service, proc.env, proc.port);
        Object.assign(proc, again);
        procs.splice(procs.indexOf(again), 1, proc);
        return proc;
      },
      async stop() {
        await Promise.all(procs.map((p) => p.child.stop(12_000)));
        await deps.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => p.child.stop(2000)));
    await deps.stop();
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** A service could not listen on the free port it was given: another process took it. */
class PortTaken extends Error {}
