// Row 17: the routes on a Redis Cluster (3 masters, 3 replicas; REDIS_CLUSTER_NODES), and
// the master holding the first user's route SIGKILLed under load. Its replica takes over
// after the cluster's node timeout (2 s); routing goes on and no accepted message is lost:
// a binding written to the dead master and not yet replicated is re-created by the next
// renewal (ROUTE_TTL_SECONDS 6: every 2 s), and what was routed meanwhile is handed off
// again (UNROUTED_RECHECK) or pushed again after ACK_TIMEOUT.
import { keySlot } from '../../../src/core/redis.js';
import { routeKey } from '../../../src/core/redis-keys.js';
import { startRedisCluster } from '../../support/redis-cluster.js';
import { since, timeUntil, underLoad, type Fault } from '../common.js';

export const redisClusterFault: Fault = {
  name: '17. SIGKILL a Redis Cluster master (3 masters + 3 replicas) under load',
  run: async ({ sqlitePath }) => {
    const redis = await startRedisCluster();
    try {
      return await underLoad(
        sqlitePath,
        async () => {
          // The population's users are chaos-user-<i>: kill the master of the first one's
          // route, so that the row always hits routes in use.
          const slot = keySlot(routeKey('chaos-user-0'));
          const victim = await redis.masterOf(slot);
          const t0 = performance.now();
          victim.child.kill('SIGKILL');
          const detectedMs = await timeUntil(
            async () => (await redis.masterOf(slot)).port !== victim.port,
            20_000,
            t0,
          );
          const recoveredMs = await redis
            .waitHealthy(20_000)
            .then(() => since(t0))
            .catch(() => undefined);
          return {
            detectedMs,
            recoveredMs,
            note: `killed master :${victim.port}; detected = a replica is master of its slots; recovered = cluster_state:ok on every live node`,
            problem:
              recoveredMs === undefined
                ? 'the Redis Cluster did not become healthy within 20 s'
                : undefined,
          };
        },
        {
          env: {
            REDIS_CLUSTER_NODES: redis.seeds,
            ROUTE_TTL_SECONDS: '6',
            UNROUTED_RECHECK: '1s',
          },
        },
      );
    } finally {
      await redis.stop();
    }
  },
};
