import { readFileSync } from 'node:fs';
import { Cluster, type ChainableCommander, type Redis } from 'ioredis';
import { groupByShard, type RedisClient } from './redis.js';
import { nodeUsersKey, routeKey } from './redis-keys.js';

const script = (name: string): string =>
  readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');

/** The route scripts, one key each (see src/core/lua), as pipeline commands. */
interface RoutePipeline extends ChainableCommander {
  /** 1 when the binding is new (or had lapsed), else 0. */
  bindRoute(routeKey: string, nodeId: string, ttlMs: number): RoutePipeline;
  unbindRoute(routeKey: string, nodeId: string): RoutePipeline;
}

/** The batch look-up script, for a standalone Redis. */
interface RedisWithLookup {
  liveRoutes(numberOfKeys: number, ...keys: string[]): Promise<string[][]>;
}

/** How many users go in one batch when binding, unbinding or looking up many at once. */
const BATCH = 1000;

/**
 * routes: which push nodes each user is connected to, in Redis. Push nodes write their
 * own bindings with an expiry and renew them well before it; dispatch reads them.
 *
 * Every command touches one key (a user's route key, or a node's user index), so routes
 * work on a standalone Redis and on Redis Cluster alike; what spans many users is
 * pipelined per shard, one round trip per shard per batch.
 */
export class Routes {
  constructor(
    readonly redis: RedisClient,
    private readonly ttlMs: number,
  ) {
    redis.defineCommand('bindRoute', { numberOfKeys: 1, lua: script('bindRoute-1') });
    redis.defineCommand('unbindRoute', { numberOfKeys: 1, lua: script('unbindRoute-1') });
    redis.defineCommand('liveRoutes', { lua: script('liveRoutes-N') });
  }

  /** Binds a user to a node; true when the user had no live binding to it before. Every
   *  expiry is by Redis's clock, never the caller's. */
  async add(nodeId: string, userId: string): Promise<boolean> {
    return (await this.addAll(nodeId, [userId])).length === 1;
  }

  async remove(nodeId: string, userId: string): Promise<void> {
    await this.removeAll(nodeId, [userId]);
  }

  /**
   * Unbinds users from a node and drops them from its index, a thousand per batch: on a
   * standalone Redis one pipeline per batch, on a Redis Cluster one per shard. Every batch is
   * tried; the first failure is thrown once all were (the bindings it missed lapse).
   */
  async removeAll(nodeId: string, userIds: Iterable<string>): Promise<void> {
    const index = nodeUsersKey(nodeId);
    let failure: unknown;
    for (const chunk of chunks(userIds, BATCH)) {
      try {
        if (this.redis instanceof Cluster) {
          await Promise.all([
            this.perShard(chunk.map(routeKey), (p, key) => p.unbindRoute(key, nodeId)),
            this.redis.srem(index, ...chunk),
          ]);
          continue;
        }
        const pipeline = this.redis.pipeline() as RoutePipeline;
        for (const userId of chunk) pipeline.unbindRoute(routeKey(userId), nodeId);
        await execOrThrow(pipeline.srem(index, ...chunk));
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) throw failure;
  }

  /** Removes every route of a node that left the cluster: a thousand users at a time are
   *  popped from its index, then unbound. Returns how many users were unbound. */
  async unbindNode(nodeId: string): Promise<number> {
    const index = nodeUsersKey(nodeId);
    const before = await this.redis.scard(index);
    let unbound = 0;
    // Bounded: the users indexed when it began, and as many again bound meanwhile.
    for (let round = 0; round <= 2 * Math.ceil(before / BATCH); round++) {
      const users = await this.redis.spop(index, BATCH);
      if (users.length === 0) break;
      try {
        await this.perShard(users.map(routeKey), (p, key) => p.unbindRoute(key, nodeId));
      } catch (err) {
        // Back in the index, for the next try; else their bindings lapse by themselves.
        await this.index(nodeId, users).catch(() => undefined);
        throw err;
      }
      unbound += users.length;
    }
    return unbound;
  }

  /**
   * Renews the bindings of every given user, re-creating those that were gone (lapsed
   * while the node stalled, unbound when it was evicted, lost with Redis). Returns the
   * users whose binding was re-created: messages may have missed them meanwhile.
   */
  async addAll(nodeId: string, userIds: Iterable<string>): Promise<string[]> {
    const rebound: string[] = [];
    for (const chunk of chunks(userIds, BATCH)) {
      const added =
        this.redis instanceof Cluster
          ? (
              await Promise.all([
                this.perShard(chunk.map(routeKey), (p, key) =>
                  p.bindRoute(key, nodeId, this.ttlMs),
                ),
                this.index(nodeId, chunk),
              ])
            )[0]
          : await this.bindOnStandalone(nodeId, chunk);
      chunk.forEach((userId, i) => {
        if (added[i] === 1) rebound.push(userId);
      });
    }
    return rebound;
  }

  /** The live nodes of each user, by Redis's clock: per batch of users, one script call on a
   *  standalone Redis, or one pipeline per shard on a Redis Cluster (TIME, then each user's
   *  route key with its expiries). Either way a batch costs one round trip per shard. */
  async lookup(userIds: readonly string[]): Promise<Map<string, string[]>> {
    const routes = new Map<string, string[]>();
    for (const chunk of chunks(userIds, BATCH)) {
      const keys = chunk.map(routeKey);
      if (!(this.redis instanceof Cluster)) {
        const live = await (this.redis as Redis & RedisWithLookup).liveRoutes(keys.length, ...keys);
        chunk.forEach((userId, i) => routes.set(userId, live[i] ?? []));
        continue;
      }
      await this.regroupOnce(() =>
        Promise.all(
          groupByShard(this.redis, keys).map(async (group) => {
            const pipeline = this.redis.pipeline().time();
            for (const i of group) pipeline.zrange(keys[i] as string, 0, -1, 'WITHSCORES');
            const [time, ...found] = await execOrThrow(pipeline);
            const [seconds, micros] = time as [string, string];
            const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
            group.forEach((i, j) => {
              const pairs = found[j] as string[];
              const live: string[] = [];
              for (let k = 0; k + 1 < pairs.length; k += 2)
                if (Number(pairs[k + 1]) >= now) live.push(pairs[k] as string);
              routes.set(chunk[i] as string, live);
            });
          }),
        ),
      );
    }
    return routes;
  }

  /** Binds users and indexes them in one pipeline, so one write: on a standalone Redis every
   *  key is on the one server (under a connect burst, a write to Redis costs a push node
   *  about as much as the WebSocket handshake). Results of the binds, in order. */
  private async bindOnStandalone(nodeId: string, userIds: readonly string[]): Promise<unknown[]> {
    const key = nodeUsersKey(nodeId);
    const pipeline = this.redis.pipeline() as RoutePipeline;
    for (const userId of userIds) pipeline.bindRoute(routeKey(userId), nodeId, this.ttlMs);
    pipeline.sadd(key, ...userIds).pexpire(key, this.ttlMs);
    return (await execOrThrow(pipeline)).slice(0, userIds.length);
  }

  /** Adds users to a node's index, which lasts as long as a binding unless renewed. */
  private async index(nodeId: string, userIds: readonly string[]): Promise<void> {
    const key = nodeUsersKey(nodeId);
    await execOrThrow(
      this.redis
        .pipeline()
        .sadd(key, ...userIds)
        .pexpire(key, this.ttlMs),
    );
  }

  /**
   * Runs one command per key, in one pipeline per shard (an ioredis Cluster pipeline
   * must stay on one node), all shards at once. Results in the order of `keys`.
   */
  private async perShard(
    keys: readonly string[],
    command: (pipeline: RoutePipeline, key: string) => void,
  ): Promise<unknown[]> {
    const results = new Array<unknown>(keys.length);
    await this.regroupOnce(() =>
      Promise.all(
        groupByShard(this.redis, keys).map(async (group) => {
          const pipeline = this.redis.pipeline() as RoutePipeline;
          for (const i of group) command(pipeline, keys[i] as string);
          const values = await execOrThrow(pipeline);
          group.forEach((i, j) => (results[i] = values[j]));
        }),
      ),
    );
    return results;
  }

  /** Runs `send` again once if a failover moved slots between grouping and sending. */
  private async regroupOnce(send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } catch (err) {
      if (!/same slots allocation group/.test((err as Error).message)) throw err;
      await send();
    }
  }
}

function* chunks<T>(items: Iterable<T>, size: number): Generator<T[]> {
  let chunk: T[] = [];
  for (const item of items) {
    chunk.push(item);
    if (chunk.length === size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

async function execOrThrow(pipeline: ChainableCommander): Promise<unknown[]> {
  const results = (await pipeline.exec()) ?? [];
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}
