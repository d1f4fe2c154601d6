import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { ServiceView } from '../core/discovery.js';
import { HttpError } from '../core/http.js';
import { sendSplitting, tooLarge } from '../core/send-splitting.js';
import type { Logger } from '../core/logger.js';
import { Peers } from '../core/peers.js';
import { LeaderLock } from '../core/leader.js';
import { forwardHop, handoffHop } from '../protocol/hops.js';
import type { ConnectResponse } from '../protocol/public-api.js';
import { createRedis, redisProbe } from '../core/redis.js';
import { Routes } from '../core/routes.js';
import { ServiceHost } from '../core/service-host.js';
import { ConnectBalancer } from './connect-balancer.js';
import { forwardMessages, type ForwardDeps } from './forward-messages.js';
import {
  CONNECT_FALLBACKS,
  CONNECT_LAST_KNOWN_MS,
  EVICTION_UNBIND_GRACE_MS,
} from '../core/tuning.js';

/** What every answer of /v1/connect carries for browsers (see the route). */
const CONNECT_CORS = { 'access-control-allow-origin': '*' };

/**
 * dispatch: finds each message's user in routes (Redis), the user's nodes in the
 * registry (only passing push nodes), and forwards each node its share in one call.
 */
export function createDispatchService(
  config: Config,
  log: Logger,
  consul: ConsulClient,
): ServiceHost {
  const redis = createRedis(config.REDIS_URL, log, () => host.metrics.dependencyFailed('redis'));
  const routes = new Routes(redis, config.ROUTE_TTL_SECONDS * 1000);
  const balancer = new ConnectBalancer({ lastKnownMs: CONNECT_LAST_KNOWN_MS });
  let passingNodes = new Set<string>();
  const unbindTimers = new Map<string, NodeJS.Timeout>();
  const pushView = new ServiceView({
    consul,
    log,
    service: 'push',
    onError: () => host.metrics.dependencyFailed('consul'),
    onChange: (nodes) => {
      balancer.update(nodes);
      const now = new Set(nodes.map((n) => n.id));
      const gone = [...passingNodes].filter((id) => !now.has(id));
      passingNodes = now;
      for (const id of now) {
        clearTimeout(unbindTimers.get(id));
        unbindTimers.delete(id);
      }
      // Out of routing at once; its users are unbound only if it stays out: a node that
      // was too busy to answer a check or two keeps its bindings, instead of having to
      // re-bind and replay to every user (more load on a node that was already busy).
      for (const id of gone) {
        host.metrics.evictions.inc();
        if (unbindTimers.has(id)) continue;
        const timer = setTimeout(() => {
          unbindTimers.delete(id);
          if (!passingNodes.has(id)) void unbindEvicted([id]);
        }, EVICTION_UNBIND_GRACE_MS);
        unbindTimers.set(id, timer);
      }
    },
  });
  // One dispatch instance unbinds the users of evicted nodes; the others stand by.
  let unbindLock: LeaderLock | undefined;
  const pushNodes = new Peers({
    view: pushView,
    secret: config.secrets.INTERNAL_SECRET,
    timeoutMs: config.PEER_TIMEOUT,
  });
  const host = new ServiceHost({
    config,
    log,
    consul,
    probes: {
      redis: redisProbe(redis),
    },
  });

  const forwardDeps: ForwardDeps = {
    lookupRoutes: (userIds) => routes.lookup(userIds),
    passingNode: (nodeId) => pushView.get(nodeId),
    // A node's share of a hand-off is at most half an internal body (HANDOFF_BODY_SHARE),
    // so it fits; a node set up with a smaller limit answers 413, and the share is split.
    forward: async (node, messages) => {
      const delivered: string[] = [];
      const replayed: string[] = [];
      await sendSplitting(
        messages,
        async (part) => {
          const res = await pushNodes.callInstance(node, forwardHop, { messages: [...part] });
          host.metrics.stage('forwarded').inc(part.length);
          delivered.push(...res.delivered);
          replayed.push(...(res.replayed ?? []));
        },
        {
          splitOn: tooLarge,
          onRefused: (m, err) =>
            log.error(
              { msgId: m.id, node: node.id, err: err.message },
              'push node refuses a message as too large: it reaches the user by replay only',
            ),
        },
      );
      return { delivered, replayed };
    },
    onNodeFailed: (nodeId, messages, err) =>
      log.warn({ err: err.message, node: nodeId, messages }, 'push node did not take its messages'),
  };

  host.handle(handoffHop, async ({ messages }) => {
    host.metrics.stage('handed_off').inc(messages.length);
    const outcome = await forwardMessages(messages, forwardDeps);
    if (log.isLevelEnabled('debug')) {
      const delivered = new Set(outcome.delivered);
      for (const m of messages)
        log.debug({ msgId: m.id, to: m.to, delivered: delivered.has(m.id) }, 'routed');
    }
    return outcome;
  });

  // Browser clients call /v1/connect from their web app's origin, never dispatch's: it is
  // open to every origin (it takes no credentials and names only push nodes' URLs), its
  // errors included. A request with headers of its own is preflighted first.
  host.routes.options('/v1/connect', (ctx) => {
    ctx.set(CONNECT_CORS);
    ctx.set('access-control-allow-methods', 'GET, HEAD');
    const asked = ctx.get('access-control-request-headers');
    if (asked) ctx.set('access-control-allow-headers', asked);
    ctx.set('access-control-max-age', '600');
    ctx.status = 204;
  });
  host.routes.get('/v1/connect', (ctx) => {
    ctx.set(CONNECT_CORS);
    const url = balancer.pick();
    if (!url)
      throw new HttpError(
        503,
        'no_push_node',
        balancer.isFull
          ? 'every push node holds as many sockets as it accepts (WS_MAX_CONNECTIONS): retry shortly'
          : 'no push node is passing its health checks right now: retry shortly',
      );
    ctx.set('cache-control', 'no-store');
    ctx.body = {
      url,
      fallbacks: balancer.fallbacks(url, CONNECT_FALLBACKS),
    } satisfies ConnectResponse;
  });

  async function unbindEvicted(nodeIds: string[]): Promise<void> {
    if (!unbindLock?.isLeader) return;
    for (const nodeId of nodeIds) {
      try {
        const users = await routes.unbindNode(nodeId);
        log.info({ node: nodeId, users }, 'evicted push node: its users unbound');
      } catch (err) {
        // Its bindings lapse by themselves within ROUTE_TTL_SECONDS.
        log.warn(
          { node: nodeId, err: (err as Error).message },
          'could not unbind the users of an evicted node',
        );
      }
    }
  }

  host.onStart(async () => {
    await redis.connect();
    await pushView.start();
  });
  host.onStarted(() => {
    unbindLock = new LeaderLock({ consul, log, name: 'evicted-node-unbind', serviceId: host.id });
    unbindLock.start();
  });
  host.onDrain(async () => {
    await unbindLock?.stop();
  });
  host.onClose(async () => {
    for (const timer of unbindTimers.values()) clearTimeout(timer);
    pushView.stop();
    pushNodes.close();
    redis.disconnect();
  });
  return host;
}
