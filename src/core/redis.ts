import { Cluster, Redis } from 'ioredis';
import type { Logger } from './logger.js';
import { REDIS_COMMAND_TIMEOUT_MS } from './tuning.js';

/** A standalone Redis or a Redis Cluster: every route command works on both. */
export type RedisClient = Redis | Cluster;

/** The scheme of the Redis target that config.ts makes of REDIS_CLUSTER_NODES. */
export const REDIS_CLUSTER_SCHEME = 'redis-cluster:';

/** Commands fail fast: see createRedis. */
const FAIL_FAST = {
  maxRetriesPerRequest: 2,
  enableOfflineQueue: false,
  lazyConnect: true,
  commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
};

/**
 * A Redis client for a service: a standalone Redis at `url` (`redis://…`), or a Redis
 * Cluster when `url` is `redis-cluster://[user:password@]host:port,host:port…` (the seeds
 * of REDIS_CLUSTER_NODES). Commands fail fast while Redis is down (no offline queue:
 * callers retry on their own terms) or hung (REDIS_COMMAND_TIMEOUT_MS), reconnection goes
 * on in the background, and an outage is logged once rather than at every reconnect
 * attempt.
 */
export function createRedis(url: string, log: Logger, onError?: () => void): RedisClient {
  let down = false;
  const failed = (err: Error, node?: string): void => {
    onError?.();
    if (!down) log.warn({ err: err.message, node }, 'redis unreachable: reconnecting');
    down = true;
  };
  const redis: RedisClient = url.startsWith(REDIS_CLUSTER_SCHEME)
    ? createCluster(url)
    : new Redis(url, FAIL_FAST);
  redis.on('error', (err: Error) => failed(err));
  // A Cluster reports a shard it cannot reach (a master down until its replica takes
  // over) as a node error; the cluster as a whole stays ready.
  redis.on('node error', (err: Error, node: string) => failed(err, node));
  const back = (): void => {
    if (down) log.info('redis reachable again');
    down = false;
  };
  redis.on('ready', back);
  // A Cluster connects to a node again (e.g. the replica that took over) without a new
  // 'ready'.
  redis.on('+node', back);
  return redis;
}

function createCluster(url: string): Cluster {
  const { username, password, seeds } = parseClusterUrl(url);
  return new Cluster(seeds, {
    enableOfflineQueue: FAIL_FAST.enableOfflineQueue,
    lazyConnect: FAIL_FAST.lazyConnect,
    // Failover: a shard's master gone, its replica elected within a few seconds;
    // meanwhile commands to it fail and callers retry, as with a standalone Redis down.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    slotsRefreshTimeout: 2000,
    slotsRefreshInterval: 2000,
    // Per node: ioredis keeps an offline queue for each node's connection whatever we
    // set, so the command timeout is what bounds a command to a shard that is down.
    redisOptions: {
      username,
      password,
      maxRetriesPerRequest: FAIL_FAST.maxRetriesPerRequest,
      commandTimeout: FAIL_FAST.commandTimeout,
    },
  });
}

/** `redis-cluster://[user:password@]host:port,host:port` → the seeds and credentials. */
function parseClusterUrl(url: string): {
  seeds: { host: string; port: number }[];
  username?: string;
  password?: string;
} {
  let rest = url.slice(REDIS_CLUSTER_SCHEME.length).replace(/^\/\//, '');
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const [user, pass] = rest.slice(0, at).split(':', 2);
    username = user ? decodeURIComponent(user) : undefined;
    password = pass !== undefined ? decodeURIComponent(pass) : undefined;
    rest = rest.slice(at + 1);
  }
  const seeds = rest
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((seed) => {
      const colon = seed.lastIndexOf(':');
      const port = Number(seed.slice(colon + 1));
      if (colon <= 0 || !Number.isInteger(port)) throw new Error(`not host:port: ${seed}`);
      return { host: seed.slice(0, colon), port };
    });
  if (seeds.length === 0) throw new Error('a Redis Cluster needs at least one host:port seed');
  return { seeds, username, password };
}

/** A /health probe: Redis (or, for a Redis Cluster, the cluster client) must be ready and
 *  answer a PING. */
export function redisProbe(redis: RedisClient): () => Promise<void> {
  return async () => {
    if (redis.status !== 'ready') throw new Error(`redis is ${redis.status}`);
    // A hung Redis (SIGSTOP, a stalled host) keeps its connection "ready": ask it something.
    // The health check's own timeout, or the command timeout, bounds the wait.
    await redis.ping();
  };
}

/**
 * Splits keys by the shard that serves them, so that each group can go in one pipeline:
 * an ioredis Cluster pipeline must stay on one node. A standalone Redis is one shard.
 * Returns the indexes of `keys` per shard.
 */
export function groupByShard(redis: RedisClient, keys: readonly string[]): number[][] {
  if (!(redis instanceof Cluster)) return keys.length > 0 ? [keys.map((_, i) => i)] : [];
  const groups = new Map<string, number[]>();
  keys.forEach((key, i) => {
    // The nodes serving the slot, master first; unknown until the cluster is connected.
    const shard = redis.slots[keySlot(key)]?.join(';') ?? '';
    let group = groups.get(shard);
    if (!group) groups.set(shard, (group = []));
    group.push(i);
  });
  return [...groups.values()];
}

/** The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, or of all of it. */
export function keySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) [start, end] = [open + 1, close];
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc ^= (bytes[i] as number) << 8;
    for (let b = 0; b < 8; b++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
