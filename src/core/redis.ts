import { Redis } from 'ioredis';
import type { Logger } from './logger.js';
import { REDIS_COMMAND_TIMEOUT_MS } from './tuning.js';

/**
 * A Redis client for a service. Commands fail fast while Redis is down (no offline
 * queue: callers retry on their own terms) or hung (REDIS_COMMAND_TIMEOUT_MS), reconnection
 * goes on in the background,
 * and an outage is logged once rather than at every reconnect attempt.
 */
export function createRedis(url: string, log: Logger, onError?: () => void): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: 2,
    enableOfflineQueue: false,
    lazyConnect: true,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
  });
  let down = false;
  redis.on('error', (err: Error) => {
    onError?.();
    if (!down) log.warn({ err: err.message }, 'redis unreachable: reconnecting');
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info('redis reachable again');
    down = false;
  });
  return redis;
}

/** A /health probe: Redis must be connected. */
export function redisProbe(redis: Redis): () => void {
  return () => {
    if (redis.status !== 'ready') throw new Error(`redis is ${redis.status}`);
  };
}
