import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer } from '../../src/launcher/redis-server.js';
import { waitFor } from '../../src/launcher/child.js';
import { nodeUsersKey, routeKey } from '../../src/core/redis-keys.js';
import { loadConfig } from '../../src/core/config.js';
import { createRedis, keySlot, redisProbe, type RedisClient } from '../../src/core/redis.js';
import { Routes } from '../../src/core/routes.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { testLog } from '../support/silent-log.js';

/** Where the routes live: one redis-server, or a Redis Cluster of 3 masters and 3 replicas. */
interface Target {
  /** What createRedis is given: REDIS_URL, or what config.ts makes of REDIS_CLUSTER_NODES. */
  url: string;
  cluster?: RedisCluster;
  /** Stops the server holding `key` (SIGSTOP); the returned function resumes it. */
  hang(key: string): Promise<() => void>;
  stop(): Promise<void>;
}

const targets: { name: string; start: () => Promise<Target> }[] = [
  {
    name: 'a standalone Redis',
    async start() {
      const server = await startRedisServer();
      return {
        url: server.url,
        async hang() {
          server.child.kill('SIGSTOP');
          return () => server.child.kill('SIGCONT');
        },
        stop: () => server.stop(),
      };
    },
  },
  {
    name: 'a Redis Cluster',
    async start() {
      const cluster = await startRedisCluster();
      // As a service gets it: REDIS_CLUSTER_NODES wins over REDIS_URL.
      const env = { REDIS_CLUSTER_NODES: cluster.seeds, REDIS_URL: 'redis://127.0.0.1:1' };
      return {
        url: loadConfig('dispatch', env).REDIS_URL,
        cluster,
        async hang(key) {
          const master = await cluster.masterOf(keySlot(key));
          master.child.kill('SIGSTOP');
          return () => master.child.kill('SIGCONT');
        },
        stop: () => cluster.stop(),
      };
    },
  },
];

describe.each(targets)('routes in $name', ({ start }) => {
  let target: Target;
  let redis: RedisClient;

  /** Every key gone, as after a restart of a Redis without persistence. */
  const flushAll = async (): Promise<void> => {
    if (redis instanceof Cluster) await Promise.all(redis.nodes('master').map((n) => n.flushall()));
    else await redis.flushall();
  };

  beforeAll(async () => {
    target = await start();
    redis = createRedis(target.url, testLog('routes-test'));
    expect(redis instanceof Cluster).toBe(target.cluster !== undefined);
    await redis.connect();
    await expect(redisProbe(redis)()).resolves.toBeUndefined();
  }, 90_000);

  afterAll(async () => {
    redis?.disconnect();
    await target?.stop();
  });

  it('binds a user to each node it is connected to, and unbinds one node at a time', async () => {
    const routes = new Routes(redis, 30_000);
    await routes.add('n1', 'alice');
    await routes.add('n2', 'alice');
    await routes.add('n1', 'bob');
    let found = await routes.lookup(['alice', 'bob', 'nobody']);
    expect(found.get('alice')?.sort()).toEqual(['n1', 'n2']);
    expect(found.get('bob')).toEqual(['n1']);
    expect(found.get('nobody')).toEqual([]);
    await routes.remove('n1', 'alice');
    found = await routes.lookup(['alice']);
    expect(found.get('alice')).toEqual(['n2']);
    expect(await redis.smembers(nodeUsersKey('n1'))).toEqual(['bob']);
  });

  it("works when users' route keys and the node's index live on different shards", async () => {
    // On Redis Cluster these keys hash to slots of different masters: a script that
    // touched a route key and the node index together would fail with CROSSSLOT.
    const users = Array.from({ length: 300 }, (_, i) => `spread-${i}`);
    const slots = new Set([nodeUsersKey('n-spread'), ...users.map(routeKey)].map(keySlot));
    expect(slots.size).toBeGreaterThan(100);
    const routes = new Routes(redis, 30_000);
    expect(await routes.add('n-spread', 'spread-0')).toBe(true);
    expect(await routes.addAll('n-spread', users)).toEqual(users.slice(1));
    await routes.add('n-other', 'spread-1');
    const found = await routes.lookup(users);
    expect(found.get('spread-1')?.sort()).toEqual(['n-other', 'n-spread']);
    expect(users.every((u) => found.get(u)?.includes('n-spread'))).toBe(true);
    await routes.remove('n-spread', 'spread-2');
    expect((await routes.lookup(['spread-2'])).get('spread-2')).toEqual([]);
    expect(await routes.unbindNode('n-spread')).toBe(299);
    const after = await routes.lookup(users);
    expect(after.get('spread-1')).toEqual(['n-other']);
    expect([...after.values()].filter((nodes) => nodes.length > 0)).toHaveLength(1);
    expect(await redis.exists(nodeUsersKey('n-spread'))).toBe(0);
    expect(await redis.exists(routeKey('spread-0'))).toBe(0);
  });

  it('computes the hash slot of a key as Redis does, hash tags included', async () => {
    if (!(redis instanceof Cluster)) return; // CLUSTER KEYSLOT needs cluster mode
    const node = redis.nodes('master')[0];
    for (const key of ['', 'a', routeKey('alice'), nodeUsersKey('n1'), '{u}x', 'x{}y', 'é{ü}']) {
      expect(keySlot(key)).toBe(await node?.cluster('KEYSLOT', key));
    }
  });

  it('lets a binding lapse when its node stops renewing it', async () => {
    const routes = new Routes(redis, 300);
    await routes.add('n-short', 'carol');
    expect((await routes.lookup(['carol'])).get('carol')).toEqual(['n-short']);
    await waitFor(
      'the binding to lapse',
      async () => (await routes.lookup(['carol'])).get('carol')?.length === 0,
      3000,
    );
  });

  it('renews many bindings in pipelined chunks and rebuilds them after Redis loses every key', async () => {
    const routes = new Routes(redis, 30_000);
    const users = Array.from({ length: 2500 }, (_, i) => `user-${i}`);
    expect(await routes.addAll('n9', users)).toEqual(users);
    expect(await redis.scard(nodeUsersKey('n9'))).toBe(2500);
    // A renewal of live bindings re-creates none.
    expect(await routes.addAll('n9', users)).toEqual([]);
    await flushAll();
    expect((await routes.lookup(['user-7'])).get('user-7')).toEqual([]);
    // After Redis lost them, every one is re-created, and said so.
    expect(await routes.addAll('n9', users)).toEqual(users);
    const found = await routes.lookup(['user-0', 'user-2499']);
    expect([...found.values()]).toEqual([['n9'], ['n9']]);
    // 2,500 users take three batches, each one pipeline per shard.
    const all = await routes.lookup(users);
    expect([...all.values()].every((nodes) => nodes[0] === 'n9')).toBe(true);
  });

  it("unbinds many users of a node at once, in batches, leaving other nodes' bindings", async () => {
    const routes = new Routes(redis, 30_000);
    const users = Array.from({ length: 2500 }, (_, i) => `leaving-${i}`);
    await routes.addAll('n-mass', users);
    await routes.add('n-stays', 'leaving-7');
    await routes.removeAll('n-mass', users.slice(0, 2400));
    const found = await routes.lookup(users);
    expect(found.get('leaving-7')).toEqual(['n-stays']);
    expect(users.filter((u) => (found.get(u) ?? []).includes('n-mass'))).toEqual(users.slice(2400));
    expect(await redis.scard(nodeUsersKey('n-mass'))).toBe(100);
    expect(await redis.exists(routeKey('leaving-0'))).toBe(0);
  });

  it('says which bindings are new: a first bind, one that lapsed, one an eviction removed', async () => {
    const routes = new Routes(redis, 30_000);
    expect(await routes.add('n5', 'dora')).toBe(true);
    expect(await routes.add('n5', 'dora')).toBe(false);
    await routes.unbindNode('n5');
    expect(await routes.add('n5', 'dora')).toBe(true);
    const short = new Routes(redis, 200);
    expect(await short.add('n6', 'ed')).toBe(true);
    await waitFor(
      'the binding to lapse',
      async () => (await short.lookup(['ed'])).get('ed')?.length === 0,
      3000,
    );
    expect(await short.addAll('n6', ['ed'])).toEqual(['ed']);
  });

  it("sets each expiry by Redis's clock, not the caller's", async () => {
    const routes = new Routes(redis, 30_000);
    const [seconds, micros] = await redis.time();
    const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    await routes.add('n7', 'fay');
    const score = Number(await redis.zscore(routeKey('fay'), 'n7'));
    expect(score - redisNow).toBeGreaterThanOrEqual(30_000);
    expect(score - redisNow).toBeLessThan(31_000);
  });

  it('fails a command of a service client within the command timeout while Redis hangs', async () => {
    const client = createRedis(target.url, testLog('routes-test'));
    await client.connect();
    const routes = new Routes(client, 30_000);
    const resume = await target.hang(routeKey('gus'));
    try {
      // Without the timeout this would wait for as long as Redis hangs.
      await expect(routes.add('n8', 'gus')).rejects.toThrow(/timed out/i);
    } finally {
      resume();
      client.disconnect();
    }
    expect(await redis.ping()).toBe('PONG');
    await target.cluster?.waitHealthy();
  });
});
