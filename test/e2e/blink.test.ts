// A push node that blinks — stalled long enough for Consul to evict it and for dispatch to
// unbind its users — while its users stay connected with clients that never reconnect by
// themselves. What was sent meanwhile must reach them once the node is back.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { routeKey } from '../../src/core/redis-keys.js';
import { startCluster, type ServiceProc, type TestCluster } from '../support/cluster.js';
import { messageStatus, mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';
import { checkStatus } from '../support/consul-http.js';
import { stageCount, waitForQuiet } from '../support/metrics.js';

let cluster: TestCluster;
let redis: Redis;

const handedOff = (): Promise<number> => stageCount(cluster.dispatch.url, 'handed_off');

beforeAll(async () => {
  cluster = await startCluster({
    pushNodes: 1,
    // Short enough that the message below is rechecked, found unrouted again and left
    // waiting while the node is still stopped; bindings renewed every second.
    env: { UNROUTED_RECHECK: '1s', ROUTE_TTL_SECONDS: '3', ACK_TIMEOUT: '30s' },
  });
  redis = new Redis(cluster.deps.redis.url, { maxRetriesPerRequest: 1 });
}, 90_000);

afterAll(async () => {
  redis?.disconnect();
  await cluster?.stop();
});

describe('a push node that blinks while its users stay connected', () => {
  it('pushes what was sent during the blink to the same sockets once the node is back', async () => {
    const node = cluster.push[0] as ServiceProc;
    const victor = await TestClient.connect(
      wsUrlOf(cluster, 0),
      'victor',
      await mintToken(cluster, 'victor'),
      {
        ack: true,
      },
    );
    try {
      // The connect's own replay is done once a live message gets through.
      const [first = ''] = await postMessages(cluster, {
        to: 'victor',
        payload: 'before the blink',
      });
      await victor.waitForMessages(1);
      // Its ack through to collect too, or the replay after the blink would push it again.
      await waitFor(
        'the first message acked',
        async () => (await messageStatus(cluster, first)) === 'acked',
        5000,
      );
      node.child.kill('SIGSTOP');
      let id = '';
      try {
        await waitFor(
          'Consul to evict the stopped node',
          async () => (await checkStatus(cluster.deps.consul.addr, 'push', node.id)) === 'critical',
          10_000,
        );
        await waitFor(
          'dispatch to unbind its users',
          async () => (await redis.zrange(routeKey('victor'), 0, -1)).length === 0,
          10_000,
        );
        const before = await handedOff();
        [id = ''] = await postMessages(cluster, { to: 'victor', payload: 'sent during the blink' });
        // Handed off at ingestion, found unrouted, rechecked and found unrouted again: it
        // now waits, with nothing scheduled for it.
        await waitFor(
          'the message to be handed off twice',
          async () => (await handedOff()) >= before + 2,
          10_000,
        );
        // Nothing is scheduled for it any more: no further hand-off for longer than the
        // sweep interval (1 s) plus the recheck (1 s).
        await waitForQuiet(cluster.dispatch.url, 'handed_off', 2500);
      } finally {
        node.child.kill('SIGCONT');
      }
      await waitFor(
        'the message sent during the blink on the same socket',
        () => victor.messages.some((f) => f.id === id),
        15_000,
      );
      const m = victor.messages.find((f) => f.id === id);
      expect(m?.payload).toBe('sent during the blink');
      await waitFor(
        'the message to be acked',
        async () => (await messageStatus(cluster, id)) === 'acked',
        5000,
      );
      expect(victor.closeCode).toBeUndefined();
    } finally {
      victor.close();
    }
  });
});
