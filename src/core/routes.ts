import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { nodeUsersKey, ROUTE_KEY_PREFIX, routeKey } from './redis-keys.js';

const script = (name: string): string =>
  readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');

interface RouteCommands {
  /** 1 when the binding is new (or had lapsed), else 0. */
  addRoute(
    routeKey: string,
    nodeUsersKey: string,
    nodeId: string,
    userId: string,
    ttlMs: number,
  ): Promise<number>;
  /** numberOfKeys first, then the keys: see lookupRoutes-N.lua. */
  lookupRoutes(numberOfKeys: number, ...keys: string[]): Promise<string[][]>;
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

  /** Binds a user to a node; true when the user had no live binding to it before. Every
   *  expiry is by Redis's clock, never the caller's. */
  async add(nodeId: string, userId: string): Promise<boolean> {
    const added = await this.redis.addRoute(
      routeKey(userId),
      nodeUsersKey(nodeId),
      nodeId,
      userId,
      this.ttlMs,
    );
    return added === 1;
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

  /**
   * Renews the bindings of every given user, re-creating those that were gone (lapsed
   * while the node stalled, unbound when it was evicted, lost with Redis). Returns the
   * users whose binding was re-created: messages may have missed them meanwhile.
   */
  async addAll(nodeId: string, userIds: Iterable<string>): Promise<string[]> {
    type Pipeline = ReturnType<Redis['pipeline']> & { addRoute: (...a: unknown[]) => unknown };
    const rebound: string[] = [];
    let pipeline = this.redis.pipeline() as Pipeline;
    let chunk: string[] = [];
    const flush = async (): Promise<void> => {
      const added = await execOrThrow(pipeline);
      chunk.forEach((userId, i) => {
        if (added[i] === 1) rebound.push(userId);
      });
      pipeline = this.redis.pipeline() as Pipeline;
      chunk = [];
    };
    for (const userId of userIds) {
      pipeline.addRoute(routeKey(userId), nodeUsersKey(nodeId), nodeId, userId, this.ttlMs);
      chunk.push(userId);
      if (chunk.length === PIPELINE_CHUNK) await flush();
    }
    if (chunk.length > 0) await flush();
    return rebound;
  }

  /** The live nodes of each user: one script call per chunk of users, so a batch costs a
   *  round trip and a single command rather than one command per user. */
  async lookup(userIds: readonly string[]): Promise<Map<string, string[]>> {
    const routes = new Map<string, string[]>();
    for (let i = 0; i < userIds.length; i += PIPELINE_CHUNK) {
      const chunk = userIds.slice(i, i + PIPELINE_CHUNK);
      const found = await this.redis.lookupRoutes(chunk.length, ...chunk.map(routeKey));
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
