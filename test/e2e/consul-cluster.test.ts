import { Resolver } from 'node:dns/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { TestClient } from '../support/clients.js';
import { serfHealth, type ConsulHost } from '../support/consul-cluster.js';
import {
  LibraryUsers,
  mintTokenAt,
  passingIds,
  postMessageAt,
  startHostsCluster,
  type HostService,
  type HostsCluster,
} from '../support/host-services.js';
import { LoadGenerator, type Sent } from '../support/load.js';

// The production layout on one machine: three Consul servers (127.0.0.2–4) and three
// application hosts (127.0.0.5–7), each with its own client agent; every service on at
// least two hosts, registered with its own host's agent; one Redis; one SQLite file.
//
//   host 1 (127.0.0.5): auth, collect, dispatch, push
//   host 2 (127.0.0.6): auth, collect, dispatch, push
//   host 3 (127.0.0.7):                dispatch, push

let hc: HostsCluster;
const sockets: TestClient[] = [];
const libraries: LibraryUsers[] = [];

const host = (i: number): ConsulHost => hc.consul.clients[i]!;
const on = (service: 'auth' | 'collect' | 'dispatch' | 'push', i: number): HostService =>
  hc.of(service).find((p) => p.host === host(i))!;
const wsUrl = (p: HostService): string => `ws://${p.host.address}:${p.port}/ws`;
const since = (t0: number): number => Math.round(performance.now() - t0);

async function socket(userId: string, node: HostService): Promise<TestClient> {
  const token = await mintTokenAt(on('auth', 1).url, userId);
  const client = await TestClient.connect(wsUrl(node), userId, token, { ack: true });
  sockets.push(client);
  return client;
}

/** A steady trickle over both collect instances: `perSecond` for `seconds`, then it stops. */
function trickle(users: string[], perSecond: number, seconds: number): LoadGenerator {
  let n = 0;
  const collects = hc.of('collect');
  return new LoadGenerator(
    () => collects[n++ % collects.length]!.url,
    users,
    perSecond,
    perSecond * seconds,
  );
}

/** Waits up to timeoutMs until every accepted message reached its user; returns the rest. */
async function undelivered(
  sent: readonly Sent[],
  has: (s: Sent) => boolean,
  timeoutMs: number,
): Promise<Sent[]> {
  const missing = (): Sent[] => sent.filter((s) => !has(s));
  await waitFor('every accepted message delivered', () => missing().length === 0, timeoutMs, 50)
    // the rest is reported by the assertion
    .catch(() => undefined);
  return missing();
}

async function libraryUsers(users: string[]): Promise<LibraryUsers> {
  const lib = new LibraryUsers(`${on('dispatch', 0).url}/v1/connect`, (u) =>
    mintTokenAt(on('auth', 0).url, u),
  );
  libraries.push(lib);
  await lib.start(users);
  return lib;
}

/** Times (ms from t0) until the dead agent's serfHealth is critical and its services are not passing. */
async function untilOutOfRouting(
  dead: ConsulHost,
  services: HostService[],
  t0: number,
): Promise<{ serfMs: number; evictedMs: number }> {
  const witness = host(0);
  let serfMs: number | undefined;
  await waitFor(
    `serfHealth of ${dead.node} critical and its services out of the passing set`,
    async () => {
      if (serfMs === undefined && (await serfHealth(witness.addr, dead.node)) === 'critical')
        serfMs = since(t0);
      for (const p of services)
        if ((await passingIds(witness.addr, p.service)).has(p.id)) return false;
      return serfMs !== undefined;
    },
    30_000,
    20,
  );
  return { serfMs: serfMs!, evictedMs: since(t0) };
}

/** Starts a killed agent again and waits until the services registered with it pass again. */
async function restartAgent(dead: ConsulHost, services: HostService[]): Promise<void> {
  if (!dead.child.running) await dead.restart();
  await waitFor(
    `the services of ${dead.node} passing again`,
    async () => {
      for (const p of services)
        if (!(await passingIds(host(0).addr, p.service)).has(p.id)) return false;
      return true;
    },
    30_000,
    50,
  );
}

beforeAll(async () => {
  hc = await startHostsCluster(
    { auth: [0, 1], collect: [0, 1], dispatch: [0, 1, 2], push: [0, 1, 2] },
    // The production sync interval (5 s): a push node learns that its agent is back only
    // at its next sync, and must not close the sockets it got meanwhile.
    { env: { ACK_TIMEOUT: '2s', CONSUL_SYNC_INTERVAL: '5s' } },
  );
}, 120_000);

afterAll(async () => {
  for (const s of sockets) s.close();
  for (const l of libraries) l.stop();
  await hc?.stop();
}, 60_000);

describe('a cluster over three Consul servers and three hosts with client agents', () => {
  it('registers every service with its own host agent and delivers to users on different hosts', async () => {
    for (const p of hc.procs) {
      const res = await fetch(`http://${p.host.addr}/v1/agent/services`);
      const local = (await res.json()) as Record<string, { Address: string }>;
      expect(local[p.id]?.Address).toBe(p.host.address);
    }
    const alice5 = await socket('alice', on('push', 0));
    const alice6 = await socket('alice', on('push', 1));
    const bob7 = await socket('bob', on('push', 2));
    const [a, b] = [
      await postMessageAt(on('collect', 1).url, 'alice', { text: 'to alice' }),
      await postMessageAt(on('collect', 0).url, 'bob', { text: 'to bob' }),
    ];
    for (const c of [alice5, alice6]) expect((await c.waitForMessages(1))[0]?.id).toBe(a);
    expect((await bob7.waitForMessages(1))[0]?.id).toBe(b);
    expect(alice5.messages).toHaveLength(1);
    expect(bob7.messages).toHaveLength(1);
  });

  it('elects a new leader when the leader server is SIGKILLed under a trickle, and loses nothing', async () => {
    const users = ['lead-0', 'lead-1', 'lead-2', 'lead-3', 'lead-4', 'lead-5'];
    const clients = await Promise.all(users.map((u, i) => socket(u, on('push', i % 3))));
    const byUser = new Map(clients.map((c) => [c.userId, c]));
    const gen = trickle(users, 20, 10);
    gen.start();
    await waitFor('some messages accepted before the fault', () => gen.sent.length >= 20, 5000);

    const victim = await hc.consul.leaderHost();
    const before = await hc.consul.leader(victim);
    const survivors = hc.consul.servers.filter((s) => s !== victim);
    const t0 = performance.now();
    await victim.kill();
    await waitFor(
      'a surviving server to report a new leader',
      async () => {
        const seen = await Promise.all(survivors.map((s) => hc.consul.leader(s).catch(() => '')));
        return seen.every((l) => l !== '' && l !== before && l === seen[0]);
      },
      20_000,
      20,
    );
    const electedMs = since(t0);
    console.log(
      `[consul-cluster] new leader elected ${electedMs} ms after SIGKILL of ${victim.node}`,
    );

    await waitFor('the trickle to finish', () => gen.sent.length + gen.refused >= 200, 20_000);
    await gen.stop();
    const missing = await undelivered(
      gen.sent,
      (s) => byUser.get(s.to)!.messages.some((m) => m.id === s.id),
      20_000,
    );
    expect(gen.refused).toBe(0);
    expect(missing).toEqual([]);
    expect(electedMs).toBeLessThan(10_000);

    // Back to three servers for the next tests: the old leader rejoins with its data dir.
    await victim.restart();
    await waitFor(
      'three raft peers again',
      async () => {
        const res = await fetch(`http://${victim.addr}/v1/status/peers`);
        return res.ok && ((await res.json()) as string[]).length === 3;
      },
      20_000,
      100,
    );
  }, 90_000);

  it('takes the services of a SIGKILLed client agent out of routing within seconds; users on other hosts lose nothing, and its own users get everything once it is back', async () => {
    const dead = host(2);
    const outOfRouting = hc.on(dead);
    const users = Array.from({ length: 12 }, (_, i) => `agent-${i}`);
    const lib = await libraryUsers(users);
    const onDead = lib.usersOn(dead.address, on('push', 2).port);
    expect(onDead.length).toBeGreaterThan(0);

    const gen = trickle(users, 20, 10);
    gen.start();
    await waitFor('some messages accepted before the fault', () => gen.sent.length >= 20, 5000);
    const t0 = performance.now();
    await dead.kill();
    const { serfMs, evictedMs } = await untilOutOfRouting(dead, outOfRouting, t0);
    console.log(
      `[consul-cluster] ${dead.node} SIGKILLed: serfHealth critical after ${serfMs} ms, ` +
        `its ${outOfRouting.length} services (${outOfRouting.map((p) => p.service).join(', ')}) ` +
        `out of the passing set after ${evictedMs} ms`,
    );
    expect(evictedMs).toBeLessThan(15_000);

    await waitFor('the trickle to finish', () => gen.sent.length + gen.refused >= 200, 30_000);
    await gen.stop();
    expect(gen.refused).toBe(0);
    const elsewhere = gen.sent.filter((s) => !onDead.includes(s.to));
    expect(await undelivered(elsewhere, (s) => lib.received.get(s.to)!.has(s.id), 20_000)).toEqual(
      [],
    );

    // The agent comes back (a supervisor restarts it): its services pass again, and what
    // its push node's users were sent meanwhile, waiting in the store, reaches them.
    const t1 = performance.now();
    await restartAgent(dead, outOfRouting);
    const backMs = since(t1);
    expect(await undelivered(gen.sent, (s) => lib.received.get(s.to)!.has(s.id), 30_000)).toEqual(
      [],
    );
    console.log(
      `[consul-cluster] ${dead.node} restarted: its services passing again after ${backMs} ms, ` +
        `everything delivered ${since(t1)} ms after the restart`,
    );
    lib.stop();
  }, 120_000);

  // A push node whose own client agent is dead is out of routing; it notices that its agent
  // stopped answering and, after AGENT_LOST_MS, closes its sockets with 1012, so that their
  // clients reconnect through /v1/connect to a node in routing.
  it('moves the users of a push node whose client agent died to a node in routing, where they get what is sent', async () => {
    const dead = host(2);
    const outOfRouting = hc.on(dead);
    const users = Array.from({ length: 9 }, (_, i) => `moved-${i}`);
    const lib = await libraryUsers(users);
    const onDead = lib.usersOn(dead.address, on('push', 2).port);
    expect(onDead.length).toBeGreaterThan(0);
    try {
      const t0 = performance.now();
      await dead.kill();
      await untilOutOfRouting(dead, outOfRouting, t0);
      await waitFor(
        `the users of push on ${dead.node} to be served elsewhere`,
        () =>
          onDead.every((u) => {
            const c = lib.clients.get(u)!;
            return c.connectionState === 'open' && !c.nodeUrl?.includes(`//${dead.address}:`);
          }),
        30_000,
        50,
      );
      console.log(
        `[consul-cluster] ${dead.node} SIGKILLed: its push node's ${onDead.length} users on other hosts after ${since(t0)} ms`,
      );
      // With the agent still dead, what they are sent reaches them.
      const gen = trickle(onDead, 10, 2);
      gen.start();
      await waitFor('the trickle to finish', () => gen.sent.length + gen.refused >= 20, 20_000);
      await gen.stop();
      expect(gen.refused).toBe(0);
      expect(await undelivered(gen.sent, (s) => lib.received.get(s.to)!.has(s.id), 20_000)).toEqual(
        [],
      );
    } finally {
      lib.stop();
      await restartAgent(dead, outOfRouting);
    }
  }, 120_000);

  it('answers push.service.consul SRV with passing push nodes only, and drops a SIGKILLed one', async () => {
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`${host(0).address}:${host(0).dnsPort}`]);
    const srvPorts = async (name = 'push.service.consul'): Promise<number[]> =>
      (await resolver.resolveSrv(name)).map((r) => r.port).sort();
    const passingPorts = async (): Promise<number[]> => {
      const ids = await passingIds(host(0).addr, 'push');
      return hc
        .of('push')
        .filter((p) => ids.has(p.id))
        .map((p) => p.port)
        .sort();
    };
    // All three: the test before restarts an agent, and a CI run (on 5fd971c) once found one
    // push node out of the passing set here, after that test had seen all three pass.
    await waitFor(
      'the SRV answer to list the passing push nodes, all three of them',
      async () => {
        const srv = JSON.stringify(await srvPorts());
        const passing = await passingPorts();
        if (srv !== JSON.stringify(passing) || passing.length !== 3)
          throw new Error(`SRV ${srv}, passing ${JSON.stringify(passing)}`);
        return true;
      },
      20_000,
    );
    expect(await srvPorts()).toHaveLength(3);
    // The RFC 2782 name, as load balancers (HAProxy's server-template) ask for it.
    expect(await srvPorts('_push._tcp.service.consul')).toEqual(await srvPorts());

    const victim = on('push', 1);
    const t0 = performance.now();
    victim.child.kill('SIGKILL');
    await waitFor(
      'the SIGKILLed push node to leave the SRV answer',
      async () => !(await srvPorts()).includes(victim.port),
      15_000,
      20,
    );
    const droppedMs = since(t0);
    console.log(
      `[consul-cluster] SRV answer dropped the SIGKILLed push node after ${droppedMs} ms`,
    );
    expect(await srvPorts()).toEqual(
      hc
        .of('push')
        .filter((p) => p !== victim)
        .map((p) => p.port)
        .sort(),
    );
    expect(droppedMs).toBeLessThan(5000);
  }, 60_000);
});
