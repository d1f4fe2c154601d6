import { startConsulAgent, type ConsulAgent } from '../../src/launcher/consul-agent.js';
import { startRedisServer, type RedisServer } from '../../src/launcher/redis-server.js';

export { waitFor, freePort } from '../../src/launcher/child.js';

export interface Deps {
  consul: ConsulAgent;
  redis: RedisServer;
  stop(): Promise<void>;
}

/** A real Consul dev agent and a real redis-server on free loopback ports, for one test file. */
export async function startDeps(): Promise<Deps> {
  // At info, the agent logs each sync of a service or check to the catalog: a service that
  // never passes in the catalog while its agent says passing (seen in CI, cause unknown)
  // then shows whether, and when, the agent synced it.
  const [consul, redis] = await Promise.all([
    startConsulAgent({ logLevel: 'info' }),
    startRedisServer(),
  ]);
  return {
    consul,
    redis,
    async stop() {
      await Promise.all([consul.stop(), redis.stop()]);
    },
  };
}
