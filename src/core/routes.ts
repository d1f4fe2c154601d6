import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { nodeUsersKey, ROUTE_KEY_PREFIX, routeKey } from './redis-keys.js';

const script = (name: string): string =>
  readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');

interface RouteCommands {
  addRoute(
    routeKey: string,
    nodeUsersKey: string,
    nodeId: string,
    userId: string,
    now: number,
    ttlMs: number,
  ): Promise<number>;
  /** numberOfKeys first, then the keys, then now: see lookupRoutes-N.lua. */
  lookupRoutes(numberOfKeys: number, ...keysThenNow: (string | number)[]): Promise<string[][]>;
  unbindNode(nodeUsersKey: string, nodeId: string, prefix: string, batch: number): Promise<number>;
  removeRoute(
    routeKey: string,
    nodeUsersKey: string,
    nodeId: string,
    userId: string,
  ): Promise<number>;
}
type RoutesRedis = Redis & RouteCommands;

/** How many commands go in one pipeline when binding many users at once. */
const PIPELINE_CHUNK = 1000;

/**
 * routes: which push nodes each user is connected to, in Redis. Push nodes write their
 * own bindings with an expiry and renew them well before it; dispatch reads them.
 */
export class Routes {
  readonly redis: RoutesRedis;

  constructor(
    redis: Redis,
    private readonly ttlMs: number,
  ) {
    redis.defineCommand('addRoute', { numberOfKeys: 2, lua: script('addRoute-2') });
    redis.defineCommand('removeRoute', { numberOfKeys: 2, lua: script('removeRoute-2') });
    redis.defineCommand('unbindNode', { numberOfKeys: 1, lua: script('unbindNode-1') });
    redis.defineCommand('lookupRoutes', { lua: script('lookupRoutes-N') });
    this.redis = redis as RoutesRedis;
  }

  async add(nodeId: string, userId: string): Promise<void> {
    await this.redis.addRoute(
      routeKey(userId),
      nodeUsersKey(nodeId),
      nodeId,
      userId,
      Date.now(),
      this.ttlMs,
    );
  }

  async remove(nodeId: string, userId: string): Promise<void> {
    await this.redis.removeRoute(routeKey(userId), nodeUsersKey(nodeId), nodeId, userId);
  }

  /** Removes every route of a node that left the cluster, a thousand users per call so
   *  Redis is never blocked long. Returns how many users were unbound. */
  async unbindNode(nodeId: string): Promise<number> {
    const before = await this.redis.scard(nodeUsersKey(nodeId));
    let left = before;
    while (left > 0)
      left = await this.redis.unbindNode(nodeUsersKey(nodeId), nodeId, ROUTE_KEY_PREFIX, 1000);
    return before;
  }

  /** Renews (or re-creates, after a Redis loss) the bindings of every given user. */
  async addAll(nodeId: string, userIds: Iterable<string>): Promise<void> {
    const now = Date.now();
    let pipeline = this.redis.pipeline() as ReturnType<Redis['pipeline']> & {
      addRoute: (...a: unknown[]) => unknown;
    };
    let n = 0;
    for (const userId of userIds) {
      pipeline.addRoute(routeKey(userId), nodeUsersKey(nodeId), nodeId, userId, now, this.ttlMs);
      if (++n % PIPELINE_CHUNK === 0) {
        await execOrThrow(pipeline);
        pipeline = this.redis.pipeline() as typeof pipeline;
      }
    }
    if (n % PIPELINE_CHUNK !== 0) await execOrThrow(pipeline);
  }

  /** The live nodes of each user: one script call per chunk of users, so a batch costs a
   *  round trip and a single command rather than one command per user. */
  async lookup(userIds: readonly string[]): Promise<Map<string, string[]>> {
    const now = Date.now();
    const routes = new Map<string, string[]>();
    for (let i = 0; i < userIds.length; i += PIPELINE_CHUNK) {
      const chunk = userIds.slice(i, i + PIPELINE_CHUNK);
      const found = await this.redis.lookupRoutes(chunk.length, ...chunk.map(routeKey), now);
      chunk.forEach((userId, j) => routes.set(userId, found[j] ?? []));
    }
    return routes;
  }
}

async function execOrThrow(pipeline: ReturnType<Redis['pipeline']>): Promise<unknown[]> {
  const results = (await pipeline.exec()) ?? [];
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}
