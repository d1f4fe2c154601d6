import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type RedisServer } from '../../src/launcher/redis-server.js';
import { waitFor } from '../../src/launcher/child.js';
import { nodeUsersKey, routeKey } from '../../src/core/redis-keys.js';
import { createRedis } from '../../src/core/redis.js';
import { Routes } from '../../src/core/routes.js';
import { testLog } from '../support/silent-log.js';

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedisServer();
  redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

describe('routes in a real Redis', () => {
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
    await redis.flushall();
    expect((await routes.lookup(['user-7'])).get('user-7')).toEqual([]);
    // After Redis lost them, every one is re-created, and said so.
    expect(await routes.addAll('n9', users)).toEqual(users);
    const found = await routes.lookup(['user-0', 'user-2499']);
    expect([...found.values()]).toEqual([['n9'], ['n9']]);
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
    const client = createRedis(server.url, testLog('routes-test'));
    await client.connect();
    const routes = new Routes(client, 30_000);
    server.child.kill('SIGSTOP');
    try {
      // Without the timeout this would wait for as long as Redis hangs.
      await expect(routes.add('n8', 'gus')).rejects.toThrow(/timed out/i);
    } finally {
      server.child.kill('SIGCONT');
      client.disconnect();
    }
    expect(await redis.ping()).toBe('PONG');
  });
});
