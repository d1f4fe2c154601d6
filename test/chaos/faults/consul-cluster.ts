// Two rows on the production Consul layout (test/support/consul-cluster.ts): three servers
// on 127.0.0.2–4 and a client agent per application host on 127.0.0.5–7, every service on
// at least two hosts and registered with its own host's agent, library clients connecting
// through dispatch on host 1, a steady load over both collect instances.
//
//   leader:       the Consul leader server SIGKILLed; detected = a new leader elected.
//   client-agent: host 3's client agent SIGKILLed, started again after AGENT_DOWN_MS;
//                 detected = its services (dispatch, push) out of the passing set,
//                 recovered = every message accepted so far delivered.
import { waitFor } from '../../../src/launcher/child.js';
import { serfHealth } from '../../support/consul-cluster.js';
import {
  LibraryUsers,
  mintTokenAt,
  passingIds,
  startHostsCluster,
  type HostsCluster,
} from '../../support/host-services.js';
import { LoadGenerator, type Sent } from '../../support/load.js';
import { quick, since, sleep, timeUntil, type Fault, type Result } from '../common.js';

export type ConsulClusterFaultKind = 'leader' | 'client-agent';

const AGENT_DOWN_MS = 10_000;

/** Runs one fault on a fresh layout and returns the row: sent, delivered, lost, timings. */
export async function runConsulClusterFault(
  kind: ConsulClusterFaultKind,
  o: { sqlitePath: string },
): Promise<Result> {
  const hc = await startHostsCluster(
    { auth: [0, 1], collect: [0, 1], dispatch: [0, 1, 2], push: [0, 1, 2] },
    { env: { ACK_TIMEOUT: '3s', SQLITE_PATH: o.sqlitePath } },
  );
  const at = (service: 'auth' | 'dispatch', i: number): string =>
    hc.of(service).find((p) => p.host === hc.consul.clients[i])!.url;
  const users = Array.from({ length: quick ? 20 : 60 }, (_, i) => `consul-user-${i}`);
  const lib = new LibraryUsers(`${at('dispatch', 0)}/v1/connect`, (u) =>
    mintTokenAt(at('auth', 0), u),
  );
  const rate = quick ? 20 : 50;
  let n = 0;
  const collects = hc.of('collect');
  const gen = new LoadGenerator(() => collects[n++ % collects.length]!.url, users, rate);
  try {
    await lib.start(users);
    gen.start();
    await sleep(2000);
    const times = kind === 'leader' ? await killLeader(hc) : await killClientAgent(hc, gen, lib);
    await sleep(2000);
    await gen.stop();
    const missing = (): Sent[] => gen.sent.filter((s) => !lib.received.get(s.to)?.has(s.id));
    await waitFor('every accepted message delivered', () => missing().length === 0, 30_000, 50)
      // reported as lost below
      .catch(() => undefined);
    const lost = missing();
    return {
      ...times,
      sent: gen.sent.length,
      delivered: gen.sent.length - lost.length,
      duplicates: lib.duplicates,
      lost: lost.length,
      lostIds: lost.slice(0, 10).map((s) => `${s.to}:${s.id}`),
      note: `${times.note}; ${gen.refused} refused`,
    };
  } finally {
    await gen.stop();
    lib.stop();
    await hc.stop();
  }
}

type Times = Pick<Result, 'detectedMs' | 'recoveredMs' | 'note' | 'problem'> & { note: string };

async function killLeader(hc: HostsCluster): Promise<Times> {
  const victim = await hc.consul.leaderHost();
  const before = await hc.consul.leader(victim);
  const survivors = hc.consul.servers.filter((s) => s !== victim);
  const t0 = performance.now();
  await victim.kill();
  const detectedMs = await timeUntil(
    async () => {
      const seen = await Promise.all(survivors.map((s) => hc.consul.leader(s).catch(() => '')));
      return seen.every((l) => l !== '' && l !== before && l === seen[0]);
    },
    20_000,
    t0,
  );
  return {
    detectedMs,
    note: `${victim.node} was leader; detected = new leader elected`,
    problem: detectedMs === undefined ? 'no new leader within 20 s' : undefined,
  };
}

async function killClientAgent(
  hc: HostsCluster,
  gen: LoadGenerator,
  lib: LibraryUsers,
): Promise<Times> {
  const dead = hc.consul.clients[2]!;
  const witness = hc.consul.clients[0]!.addr;
  const services = hc.on(dead);
  const t0 = performance.now();
  await dead.kill();
  const detectedMs = await timeUntil(
    async () => {
      for (const p of services) if ((await passingIds(witness, p.service)).has(p.id)) return false;
      return (await serfHealth(witness, dead.node)) === 'critical';
    },
    20_000,
    t0,
  );
  await sleep(Math.max(0, AGENT_DOWN_MS - since(t0)));
  await dead.restart();
  const upTo = gen.sent.length;
  const recoveredMs = await timeUntil(
    () => gen.sent.slice(0, upTo).every((s) => lib.received.get(s.to)?.has(s.id)),
    30_000,
    t0,
  );
  return {
    detectedMs,
    recoveredMs,
    note:
      `${dead.node} down ${AGENT_DOWN_MS / 1000} s; detected = its ${services.length} services ` +
      'out of the passing set; recovered = all sent so far delivered (its push node closes its ' +
      'sockets once its agent has been silent for 5 s: its users move to other hosts)',
    problem: detectedMs === undefined ? 'services still passing 20 s after the kill' : undefined,
  };
}

export const consulClusterFaults: Fault[] = [
  {
    name: '15. SIGKILL the Consul leader server (3 servers, client agent per host)',
    run: (o) => runConsulClusterFault('leader', o),
  },
  {
    name: `16. SIGKILL a host's Consul client agent for ${AGENT_DOWN_MS / 1000} s`,
    run: (o) => runConsulClusterFault('client-agent', o),
  },
];
