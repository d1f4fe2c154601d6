import Router from '@koa/router';
import { Redis } from 'ioredis';
import { z } from 'zod';
import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { ServiceView } from '../core/discovery.js';
import { HttpError, readJson } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { Peers } from '../core/peers.js';
import type { ConnectResponse, DeliverResponse } from '../core/protocol.js';
import { Routes } from '../core/routes.js';
import { ServiceHost } from '../core/service-host.js';
import { validate } from '../core/validation.js';
import { ConnectBalancer } from './connect-balancer.js';
import { routeMessages } from './route-messages.js';

const envelopeSchema = z.object({
  id: z.string(),
  to: z.string(),
  payload: z.unknown(),
  createdAt: z.string(),
});
const dispatchSchema = z.object({ messages: z.array(envelopeSchema) });

/**
 * dispatch: finds each message's user in routes (Redis), the user's nodes in the
 * registry (only passing push nodes), and forwards each node its share in one call.
 */
export function createDispatchService(
  config: Config,
  log: Logger,
  consul: ConsulClient,
): ServiceHost {
  const redis = new Redis(config.REDIS_URL, {
    maxRetriesPerRequest: 2,
    enableOfflineQueue: false,
    lazyConnect: true,
  });
  const routes = new Routes(redis, config.ROUTE_TTL_SECONDS * 1000);
  const balancer = new ConnectBalancer();
  const pushView = new ServiceView({
    consul,
    log,
    service: 'push',
    onChange: (nodes) => balancer.update(nodes),
  });
  const pushNodes = new Peers(pushView, config.secrets.INTERNAL_SECRET, config.PEER_TIMEOUT);
  const host = new ServiceHost({
    config,
    log,
    consul,
    probes: {
      redis: async () => {
        if (redis.status !== 'ready') throw new Error(`redis is ${redis.status}`);
      },
    },
  });

  const router = new Router();
  router.post('/internal/dispatch', async (ctx) => {
    const { messages } = validate(dispatchSchema, await readJson(ctx, config.MAX_BODY_BYTES * 16));
    const userRoutes = await routes.lookup([...new Set(messages.map((m) => m.to))]);
    const byNode = routeMessages(messages, userRoutes, (id) => pushView.get(id) !== undefined);
    const delivered = new Set<string>();
    await Promise.all(
      [...byNode].map(async ([nodeId, batch]) => {
        const node = pushView.get(nodeId);
        if (!node) return;
        try {
          const res = await pushNodes.callInstance<DeliverResponse>(
            node,
            'POST',
            '/internal/deliver',
            { messages: batch },
          );
          for (const id of res.delivered) delivered.add(id);
        } catch (err) {
          // Counts as not delivered: the message stays pending and is replayed on reconnect.
          log.warn(
            { err: (err as Error).message, node: nodeId, messages: batch.length },
            'push node did not take its messages',
          );
        }
      }),
    );
    ctx.body = { delivered: [...delivered] } satisfies DeliverResponse;
  });

  router.get('/v1/connect', (ctx) => {
    const url = balancer.pick();
    if (!url)
      throw new HttpError(
        503,
        'no_push_node',
        'no push node is passing its health checks right now: retry shortly',
      );
    ctx.set('cache-control', 'no-store');
    ctx.body = { url } satisfies ConnectResponse;
  });

  host.app.use(router.routes()).use(router.allowedMethods());
  host.onStart(async () => {
    await redis.connect();
    await pushView.start();
  });
  host.onClose(async () => {
    pushView.stop();
    redis.disconnect();
  });
  return host;
}
