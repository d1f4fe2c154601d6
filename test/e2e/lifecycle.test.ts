import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { CloseCode } from '../../src/protocol/frames.js';
import { nodeUsersKey, routeKey } from '../../src/core/redis-keys.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken, TestClient, wsUrlOf } from '../support/clients.js';
import { checkStatus } from '../support/consul-http.js';

let cluster: TestCluster;
let redis: Redis;

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 2 });
  redis = new Redis(cluster.deps.redis.url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined); // the first test stops Redis on purpose
}, 90_000);

afterAll(async () => {
  redis?.disconnect();
  await cluster?.stop();
});

/** Waits until a service's /health answers 503 naming redis. */
async function redisFailing(serviceUrl: string): Promise<void> {
  await waitFor(
    'a 503 naming redis',
    async () => {
      const res = await fetch(`${serviceUrl}/health`);
      const body = (await res.json()) as { failures?: Record<string, string> };
      return res.status === 503 && body.failures?.redis !== undefined;
    },
    10_000,
  );
}

describe('eviction and drain', () => {
  it('turns a push node that loses Redis critical, and passing again once Redis is back', async () => {
    const node = cluster.push[1]!;
    await cluster.deps.redis.child.stop(5000);
    try {
      await redisFailing(node.url);
      await waitFor(
        'the node critical in Consul',
        async () => (await checkStatus(cluster.deps.consul.addr, 'push', node.id)) === 'critical',
        5000,
      );
    } finally {
      await cluster.deps.redis.restart();
    }
    await waitFor(
      'the node passing again',
      async () => (await checkStatus(cluster.deps.consul.addr, 'push', node.id)) === 'passing',
      10_000,
    );
  });

  it('turns a push node critical while Redis hangs (SIGSTOP: the connection stays open), and passing once it answers again', async () => {
    const node = cluster.push[0]!;
    cluster.deps.redis.child.kill('SIGSTOP');
    try {
      await redisFailing(node.url);
    } finally {
      cluster.deps.redis.child.kill('SIGCONT');
    }
    await waitFor(
      'the node passing again',
      async () => (await fetch(`${node.url}/health`)).status === 200,
      10_000,
    );
  });

  it('unbinds the users of a SIGKILLed push node once Consul marks it critical', async () => {
    const victim = await cluster.spawn('push');
    const client = await TestClient.connect(
      `ws://127.0.0.1:${victim.port}/ws`,
      'purge-me',
      await mintToken(cluster, 'purge-me'),
    );
    await waitFor(
      'the user bound to the node',
      async () => (await redis.sismember(nodeUsersKey(victim.id), 'purge-me')) === 1,
    );
    victim.child.kill('SIGKILL');
    // The index empties (SPOP) a round trip before the routes it held are unbound: wait for
    // both, or the check can fall between the two.
    await waitFor(
      "the node index and the user's route purged",
      async () =>
        (await redis.exists(nodeUsersKey(victim.id))) === 0 &&
        (await redis.zrange(routeKey('purge-me'), 0, -1)).length === 0,
      10_000,
    );
    expect(await redis.exists(routeKey('purge-me'))).toBe(0);
    client.close();
  });

  it('closes sockets with 1012 on SIGTERM, leaves Consul, and exits 0 within 10 s — every service', async () => {
    const client = await TestClient.connect(
      wsUrlOf(cluster, 0),
      'leaver',
      await mintToken(cluster, 'leaver'),
    );
    for (const proc of [cluster.push[0]!, cluster.dispatch, cluster.collect, cluster.auth]) {
      const t0 = Date.now();
      await proc.child.stop(12_000);
      expect(proc.child.proc.exitCode, proc.id).toBe(0);
      expect(Date.now() - t0, proc.id).toBeLessThan(10_000);
      const res = await fetch(
        `http://${cluster.deps.consul.addr}/v1/catalog/service/${proc.service}`,
      );
      const ids = ((await res.json()) as { ServiceID: string }[]).map((e) => e.ServiceID);
      expect(ids, proc.id).not.toContain(proc.id);
    }
    expect(client.closeCode).toBe(CloseCode.ServiceRestart);
  });
});
