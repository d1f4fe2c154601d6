// The production layout of Consul on one machine: three servers that elect a leader, and a
// client agent on every application host, each agent on a loopback address of its own
// (the whole 127.0.0.0/8 reaches the loopback interface). Services register with their own
// host's client agent, exactly as on separate machines.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from '../../src/launcher/binaries.js';
import { freePort, launchUntilReady, waitFor, type Child } from '../../src/launcher/child.js';

export const SERVER_ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'] as const;
export const CLIENT_ADDRESSES = ['127.0.0.5', '127.0.0.6', '127.0.0.7'] as const;

/**
 * Timings as short as Consul 1.8 allows, the same on every agent: raft at its fastest
 * (raft_multiplier 1: 1 s heartbeat and election timeouts), and LAN gossip that probes
 * every 500 ms, so a dead agent is suspected within about a second and declared failed
 * (its serfHealth critical) a few seconds later.
 */
export const TIMINGS_HCL = [
  'performance { raft_multiplier = 1 }',
  // CONSUL_CLUSTER_GOSSIP=default keeps Consul's LAN gossip defaults (probe every 1 s, 500 ms
  // timeout, suspicion_mult 4), as consul.d/production has them, to measure those.
  ...(process.env.CONSUL_CLUSTER_GOSSIP === 'default'
    ? []
    : [
        'gossip_lan { probe_interval = "500ms" probe_timeout = "300ms" suspicion_mult = 3 gossip_interval = "100ms" }',
      ]),
  'disable_update_check = true',
];

export interface ConsulHost {
  /** Consul node name: server-1…, client-1… */
  node: string;
  /** The loopback address this agent binds, serves and advertises. */
  address: string;
  server: boolean;
  httpPort: number;
  /** DNS port of a client agent; -1 on servers. */
  dnsPort: number;
  serfLanPort: number;
  /** "127.0.0.x:<http port>", as CONSUL_HTTP_ADDR takes it. */
  addr: string;
  dataDir: string;
  child: Child;
  /** SIGKILL: no leave, the others must notice by gossip. */
  kill(): Promise<void>;
  /** Starts the agent again with the same ports and data dir (it keeps its node id). */
  restart(): Promise<void>;
}

export interface ConsulCluster {
  servers: ConsulHost[];
  clients: ConsulHost[];
  /** The leader's "address:server-port" as `host` sees it ("" while there is none). */
  leader(host?: ConsulHost): Promise<string>;
  /** The server that is leader now. */
  leaderHost(): Promise<ConsulHost>;
  stop(): Promise<void>;
}

async function getText(addr: string, path: string): Promise<string> {
  const res = await fetch(`http://${addr}${path}`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`GET ${path} on ${addr}: ${res.status} ${await res.text()}`);
  return res.text();
}

/** Node name → the status of its serfHealth check, as the servers see it. */
export async function serfHealth(addr: string, node: string): Promise<string | undefined> {
  const checks = JSON.parse(await getText(addr, `/v1/health/node/${node}`)) as {
    CheckID: string;
    Status: string;
  }[];
  return checks.find((c) => c.CheckID === 'serfHealth')?.Status;
}

/**
 * Three servers (bootstrap-expect 3) and one client agent per application host, every
 * agent on its own loopback address with free ports, its own data dir and -retry-join to
 * the servers. Resolves once a leader is elected and every client agent is in the catalog.
 */
export async function startConsulCluster(
  o: {
    serverAddresses?: readonly string[];
    clientAddresses?: readonly string[];
    echo?: boolean;
  } = {},
): Promise<ConsulCluster> {
  const bin = findBinary('consul');
  const root = mkdtempSync(join(tmpdir(), 'push-cluster-consul-cluster-'));
  const serverAddrs = o.serverAddresses ?? SERVER_ADDRESSES;
  const clientAddrs = o.clientAddresses ?? CLIENT_ADDRESSES;
  const echo = o.echo ?? Boolean(process.env.TEST_LOG_LEVEL);

  interface Plan {
    node: string;
    address: string;
    server: boolean;
    ports: { http: number; dns: number; serfLan: number; serfWan: number; server: number };
  }
  const plan = async (address: string, node: string, server: boolean): Promise<Plan> => ({
    node,
    address,
    server,
    ports: {
      http: await freePort(address),
      dns: server ? -1 : await freePort(address),
      serfLan: await freePort(address),
      serfWan: server ? await freePort(address) : -1,
      server: await freePort(address),
    },
  });
  const serverPlans: Plan[] = [];
  for (const [i, a] of serverAddrs.entries())
    serverPlans.push(await plan(a, `server-${i + 1}`, true));
  const clientPlans: Plan[] = [];
  for (const [i, a] of clientAddrs.entries())
    clientPlans.push(await plan(a, `client-${i + 1}`, false));

  const argsOf = (p: Plan, dataDir: string): string[] => [
    'agent',
    `-node=${p.node}`,
    `-data-dir=${dataDir}`,
    `-bind=${p.address}`,
    `-advertise=${p.address}`,
    `-client=${p.address}`,
    `-http-port=${p.ports.http}`,
    `-dns-port=${p.ports.dns}`,
    `-serf-lan-port=${p.ports.serfLan}`,
    `-serf-wan-port=${p.ports.serfWan}`,
    `-server-port=${p.ports.server}`,
    '-grpc-port=-1',
    '-datacenter=dc1',
    '-log-level=warn',
    ...(p.server ? ['-server', '-bootstrap-expect=3'] : []),
    ...serverPlans.filter((s) => s !== p).map((s) => `-retry-join=${s.address}:${s.ports.serfLan}`),
    '-retry-interval=1s',
    ...TIMINGS_HCL.flatMap((h) => ['-hcl', h]),
  ];

  const hosts: ConsulHost[] = [];
  const launch = async (p: Plan, dataDir: string): Promise<Child> =>
    launchUntilReady({
      name: `consul ${p.node}`,
      command: bin,
      args: argsOf(p, dataDir),
      what: `consul ${p.node} to answer on ${p.address}:${p.ports.http}`,
      ready: async () => {
        await getText(`${p.address}:${p.ports.http}`, '/v1/agent/self');
        return true;
      },
      timeoutMs: 20_000,
      echo: echo ? (line) => process.stderr.write(`[consul ${p.node}] ${line}\n`) : undefined,
    });
  const start = async (p: Plan): Promise<ConsulHost> => {
    const dataDir = join(root, p.node);
    const host: ConsulHost = {
      node: p.node,
      address: p.address,
      server: p.server,
      httpPort: p.ports.http,
      dnsPort: p.ports.dns,
      serfLanPort: p.ports.serfLan,
      addr: `${p.address}:${p.ports.http}`,
      dataDir,
      child: await launch(p, dataDir),
      async kill() {
        host.child.kill('SIGKILL');
        await host.child.waitExit();
      },
      async restart() {
        await host.child.stop(5000);
        host.child = await launch(p, dataDir);
      },
    };
    hosts.push(host);
    return host;
  };

  const stopAll = async (): Promise<void> => {
    // Reverse order: client agents (last started first), then the servers.
    for (const h of [...hosts].reverse()) await h.child.stop(5000);
    rmSync(root, { recursive: true, force: true });
  };

  try {
    const servers = await Promise.all(serverPlans.map(start));
    const leader = async (host: ConsulHost = servers[0]!): Promise<string> =>
      JSON.parse(await getText(host.addr, '/v1/status/leader')) as string;
    await waitFor(
      'the three Consul servers to elect a leader',
      async () => {
        const seen = await Promise.all(servers.map((s) => leader(s)));
        return seen.every((l) => l !== '' && l === seen[0]);
      },
      30_000,
      100,
    );
    const clients = await Promise.all(clientPlans.map(start));
    await waitFor(
      'every client agent in /v1/catalog/nodes',
      async () => {
        const nodes = JSON.parse(await getText(servers[0]!.addr, '/v1/catalog/nodes')) as {
          Node: string;
        }[];
        const names = new Set(nodes.map((n) => n.Node));
        return clients.every((c) => names.has(c.node));
      },
      30_000,
      100,
    );
    return {
      servers,
      clients,
      leader,
      async leaderHost() {
        // Any agent that answers tells who leads; the leader's server port identifies it.
        for (const h of [...servers, ...clients]) {
          if (!h.child.running) continue;
          const l = await leader(h).catch(() => '');
          const found = servers.find(
            (s) => l === `${s.address}:${serverPlans[servers.indexOf(s)]!.ports.server}`,
          );
          if (found) return found;
        }
        throw new Error('no Consul server is leader');
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
