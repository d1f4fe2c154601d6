import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from './binaries.js';
import { freePort, launchUntilReady, type Child } from './child.js';

export interface ConsulAgentOptions {
  httpPort?: number;
  /** Extra -config-dir folders (service definitions, UI settings). */
  configDirs?: string[];
  nodeName?: string;
  ui?: boolean;
  /** The agent's -log-level (default warn). */
  logLevel?: 'warn' | 'info' | 'debug';
  echo?: (line: string) => void;
  /** See `ChildOptions.tiedToLauncher`. */
  tiedToLauncher?: boolean;
}

export interface ConsulAgent {
  child: Child;
  httpPort: number;
  /** "127.0.0.1:<port>", as CONSUL_HTTP_ADDR takes it. */
  addr: string;
  stop(): Promise<void>;
  /** Starts the agent again with the same ports: a dev agent comes back empty. */
  restart(): Promise<void>;
}

/**
 * A Consul dev agent on loopback. Every port is chosen free, and DNS and gRPC are off,
 * so that several agents (two test runs, a test run beside `npm start`) can coexist.
 */
export async function startConsulAgent(o: ConsulAgentOptions = {}): Promise<ConsulAgent> {
  const bin = findBinary('consul');
  const httpPort = o.httpPort ?? (await freePort());
  const serfLan = await freePort();
  const serfWan = await freePort();
  const server = await freePort();
  const args = [
    'agent',
    '-dev',
    '-bind=127.0.0.1',
    '-client=127.0.0.1',
    `-http-port=${httpPort}`,
    `-serf-lan-port=${serfLan}`,
    `-serf-wan-port=${serfWan}`,
    `-server-port=${server}`,
    '-dns-port=-1',
    '-grpc-port=-1',
    `-node=${o.nodeName ?? `push-cluster-${httpPort}`}`,
    `-log-level=${o.logLevel ?? 'warn'}`,
    ...(o.ui ? ['-ui'] : []),
    ...(o.configDirs ?? []).map((d) => `-config-dir=${d}`),
  ];
  const addr = `127.0.0.1:${httpPort}`;
  const agent: ConsulAgent = {
    child: await launch(),
    httpPort,
    addr,
    async stop() {
      await agent.child.stop(5000);
    },
    async restart() {
      await agent.child.stop(5000);
      agent.child = await launch();
    },
  };
  return agent;

  /**
   * Each start gets a new, empty data folder: a -dev agent given a data_dir (consul.d/dev
   * has one, for `consul validate`) saves every registration there and loads it again at
   * its next start, so agents sharing one would show each other's dead instances.
   */
  async function launch(): Promise<Child> {
    const dataDir = mkdtempSync(join(tmpdir(), 'push-cluster-consul-'));
    const forget = (): void => rmSync(dataDir, { recursive: true, force: true });
    let child: Child;
    try {
      child = await launchUntilReady({
        name: 'consul',
        command: bin,
        args: [...args, `-data-dir=${dataDir}`],
        what: `consul agent at ${addr} to elect itself leader`,
        ready: async () => {
          const res = await fetch(`http://${addr}/v1/status/leader`);
          return res.ok && (await res.text()).length > 4;
        },
        timeoutMs: 20_000,
        echo: o.echo,
        tiedToLauncher: o.tiedToLauncher,
      });
    } catch (err) {
      forget();
      throw err;
    }
    // Also when this process exits first (the launcher's second Ctrl-C); not after a SIGKILL.
    process.on('exit', forget);
    void child.waitExit().then(() => {
      process.off('exit', forget);
      forget();
    });
    return child;
  }
}

/** The service instances with a passing check, as the agent at `addr` (host:port) sees
 *  them (an instance with two such checks comes twice): service names and instance ids. */
export async function passingInstances(addr: string): Promise<{ service: string; id: string }[]> {
  const res = await fetch(`http://${addr}/v1/health/state/passing`, {
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`the Consul agent at ${addr} answered ${res.status}`);
  return ((await res.json()) as { ServiceName: string; ServiceID: string }[])
    .filter((check) => check.ServiceID !== '')
    .map((check) => ({ service: check.ServiceName, id: check.ServiceID }));
}
