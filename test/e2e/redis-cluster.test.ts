// A whole cluster of our processes on a Redis Cluster (REDIS_CLUSTER_NODES): routes on
// three shards, and a shard's master SIGKILLed while messages flow. Its replica takes
// over, routing goes on, and every message accepted with 202 reaches its user.
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { keySlot } from '../../src/core/redis.js';
import { routeKey } from '../../src/core/redis-keys.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';
import { LoadGenerator } from '../support/load.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';

const USERS = Array.from({ length: 20 }, (_, i) => `rc-user-${i}`);
const RATE = 50;
const SECONDS = 10;

let redisCluster: RedisCluster;
let cluster: TestCluster;
let routesView: Cluster;
const clients = new Map<string, TestClient>();

beforeAll(async () => {
  redisCluster = await startRedisCluster();
  cluster = await startCluster({
    pushNodes: 2,
    env: {
      REDIS_CLUSTER_NODES: redisCluster.seeds,
      // Bindings renewed every 2 s, so one lost with a master's unreplicated writes is
      // re-created (and its user replayed to) soon; unacked messages pushed again soon.
      ROUTE_TTL_SECONDS: '6',
      UNROUTED_RECHECK: '1s',
      ACK_TIMEOUT: '2s',
    },
  });
  routesView = new Cluster(
    redisCluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
    { redisOptions: { maxRetriesPerRequest: 1 } },
  );
  // Half the users on each push node, with plain sockets that ack what they get.
  for (const [i, userId] of USERS.entries()) {
    const token = await mintToken(cluster, userId, 3600);
    clients.set(
      userId,
      await TestClient.connect(wsUrlOf(cluster, i % 2), userId, token, { ack: true }),
    );
  }
}, 120_000);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  routesView?.disconnect();
  await cluster?.stop();
  await redisCluster?.stop();
}, 60_000);

const received = (userId: string): Set<string> =>
  new Set(clients.get(userId)?.messages.map((m) => m.id));

describe('push cluster on a Redis Cluster', () => {
  it('binds users in the Redis Cluster, not in REDIS_URL, and delivers to users on two push nodes', async () => {
    await waitFor(
      'every user bound to its node in the Redis Cluster',
      async () => {
        for (const [i, userId] of USERS.entries()) {
          const nodes = await routesView.zrange(routeKey(userId), 0, -1);
          if (nodes.join() !== cluster.push[i % 2]?.id) return false;
        }
        return true;
      },
      10_000,
    );
    // The route keys are spread over every master.
    const masters = new Set(
      await Promise.all(
        USERS.map(async (u) => (await redisCluster.masterOf(keySlot(routeKey(u)))).port),
      ),
    );
    expect(masters.size).toBe(3);
    // REDIS_CLUSTER_NODES wins over REDIS_URL: the standalone Redis holds no route.
    const standalone = new Redis(cluster.deps.redis.url, { maxRetriesPerRequest: 1 });
    try {
      expect(await standalone.dbsize()).toBe(0);
    } finally {
      standalone.disconnect();
    }
    const ids = await postMessages(cluster, {
      messages: USERS.map((to) => ({ to, payload: `hello ${to}` })),
    });
    await waitFor(
      'every user to receive their message',
      () => USERS.every((u, i) => received(u).has(ids[i] as string)),
      10_000,
    );
  });

  it('loses no message when a Redis master is SIGKILLed while messages flow: its replica takes over', async () => {
    const gen = new LoadGenerator(() => cluster.collect.url, USERS, RATE, RATE * SECONDS);
    const slot = keySlot(routeKey(USERS[0] as string));
    const victim = await redisCluster.masterOf(slot);
    const mastersOfUsers = await Promise.all(
      USERS.map(async (u) => (await redisCluster.masterOf(keySlot(routeKey(u)))).port),
    );
    const victimUsers = mastersOfUsers.filter((port) => port === victim.port).length;
    gen.start();
    let failoverMs = 0;
    try {
      await waitFor('a second of messages accepted', () => gen.sent.length >= RATE, 10_000);
      const killedAt = Date.now();
      victim.child.kill('SIGKILL');
      await waitFor(
        'a replica to take over the killed master’s slots',
        async () => (await redisCluster.masterOf(slot)).port !== victim.port,
        20_000,
        100,
      );
      await redisCluster.waitHealthy(20_000);
      failoverMs = Date.now() - killedAt;
      await waitFor(
        `all ${RATE * SECONDS} messages posted`,
        () => gen.sent.length + gen.refused >= RATE * SECONDS,
        SECONDS * 1000 + 20_000,
        100,
      );
    } finally {
      await gen.stop();
    }
    const missing = (): string[] =>
      gen.sent.filter((s) => !received(s.to).has(s.id)).map((s) => `${s.to}:${s.id}`);
    await waitFor(
      'every accepted message received',
      () => missing().length === 0,
      60_000,
      100,
    ).catch(() => undefined);
    const metrics = await (await fetch(`${cluster.dispatch.url}/metrics`)).text();
    const evictions = /^push_node_evictions_total(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1];
    const pushes = USERS.reduce((n, u) => n + (clients.get(u)?.messages.length ?? 0), 0);
    console.log(
      `redis-cluster e2e: sent ${gen.sent.length} (refused ${gen.refused}), lost ${missing().length}, ` +
        `failover (SIGKILL → new master, cluster_state:ok) ${failoverMs} ms, ` +
        `${pushes} pushes for ${gen.sent.length + USERS.length} messages, ` +
        `${victimUsers} users' routes on the killed master, push node evictions ${evictions}`,
    );
    expect(missing().slice(0, 10)).toEqual([]);
    expect(gen.refused).toBe(0);
    expect(gen.sent.length).toBe(RATE * SECONDS);
    // Routing goes on for users whose routes were on the killed master.
    const [id] = await postMessages(cluster, { to: USERS[0], payload: 'after the failover' });
    await waitFor('the first user to get a message after the failover', () =>
      received(USERS[0] as string).has(id as string),
    );
  }, 150_000);
});
