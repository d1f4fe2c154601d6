import { findBinary } from './binaries.js';
import { freePort, launchUntilReady, type Child } from './child.js';

export interface ConsulAgentOptions {
  httpPort?: number;
  /** Extra -config-dir folders (service definitions, UI settings). */
  configDirs?: string[];
  nodeName?: string;
  ui?: boolean;
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
    '-log-level=warn',
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

  function launch(): Promise<Child> {
    return launchUntilReady({
      name: 'consul',
      command: bin,
      args,
      what: `consul agent at ${addr} to elect itself leader`,
      ready: async () => {
        const res = await fetch(`http://${addr}/v1/status/leader`);
        return res.ok && (await res.text()).length > 4;
      },
      timeoutMs: 20_000,
      echo: o.echo,
      tiedToLauncher: o.tiedToLauncher,
    });
  }
}
