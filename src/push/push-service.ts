import { WebSocketServer, type WebSocket } from 'ws';
import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { ServiceView } from '../core/discovery.js';
import { HttpError } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { Peers } from '../core/peers.js';
import { createRedis, redisProbe } from '../core/redis.js';
import { Routes } from '../core/routes.js';
import { ServiceHost } from '../core/service-host.js';
import {
  AGENT_LOST_MS,
  REPLAY_PAGE,
  TOKEN_KEY_REFRESH_MS,
  TOKEN_KEY_RETRY_MS,
} from '../core/tuning.js';
import { CloseCode } from '../protocol/frames.js';
import { forwardHop } from '../protocol/hops.js';
import { AckBatcher } from './ack-batcher.js';
import { Authenticator } from './authenticator.js';
import { Bindings } from './bindings.js';
import { Connection, type ConnectionLimits } from './connection.js';
import { Delivery } from './delivery.js';
import { drain } from './drain.js';
import { Hub } from './hub.js';
import { KeepAlive } from './keep-alive.js';
import { DeliveredBatcher } from './delivered-batcher.js';
import { FirstPages } from './first-pages.js';
import { Replay } from './replay.js';
import { openFilesLimit, socketCapacity } from './socket-capacity.js';
import { TokenKey } from './token-key.js';
import { handshakeRefusal, upgradeHandler } from './upgrade.js';

/**
 * push: a node holding WebSocket connections. It binds each connected user to itself
 * in Redis (routes), pushes what dispatch forwards to the user's sockets, replays a
 * user's unacked messages on connect and passes acks on to collect.
 *
 * This file wires the parts and runs the lifecycle; each part is its own file:
 * upgrade → connection (per socket) → hub (user → sockets) ← delivery (forward hop),
 * replay (on connect), bindings (routes in Redis), keep-alive (pings), ack batcher, drain.
 */
export function createPushService(config: Config, log: Logger, consul: ConsulClient): ServiceHost {
  const redis = createRedis(config.REDIS_URL, log, () => metrics.dependencyFailed('redis'));
  const hub = new Hub<Connection>();
  const host = new ServiceHost({
    config,
    log,
    consul,
    probes: { redis: redisProbe(redis) },
    // capacity: the sockets it accepts (WS_MAX_CONNECTIONS), so /v1/connect skips it when full.
    meta: () => ({
      ws_url: wsUrl(),
      connections: String(hub.connectionCount),
      capacity: String(maxConnections),
    }),
  });
  // Behind a load balancer or ingress, clients need the public URL, not the pod's address.
  const wsUrl = (): string =>
    config.WS_PUBLIC_URL ?? `ws://${config.advertiseAddress}:${host.port}/ws`;
  const { metrics } = host;

  // ---- peers: auth checks tokens or publishes its key; collect takes acks, serves replays --
  const consulError = (): void => void metrics.dependencyFailed('consul');
  const authView = new ServiceView({ consul, log, service: 'auth', onError: consulError });
  const collectView = new ServiceView({ consul, log, service: 'collect', onError: consulError });
  const peerOptions = { secret: config.secrets.INTERNAL_SECRET, timeoutMs: config.PEER_TIMEOUT };
  const auth = new Peers({ ...peerOptions, view: authView, whenNonePassing: 'try-last-known' });
  // Replays, acks and delivered marks are reads and idempotent writes of the store: a collect
  // that fails its health check under a reconnect storm (its /health slower than Consul's
  // timeout) still answers them, and failing them at once made every replay retry with
  // backoff (2,284 of them in a storm of 6,000 users, bench `--only storm`).
  const collect = new Peers({
    ...peerOptions,
    view: collectView,
    whenNonePassing: 'try-last-known',
  });

  // ---- the parts ------------------------------------------------------------------
  const tokenKey =
    config.TOKEN_VERIFY === 'node'
      ? new TokenKey({
          auth,
          log,
          refreshMs: TOKEN_KEY_REFRESH_MS,
          retryMs: TOKEN_KEY_RETRY_MS,
        })
      : undefined;
  const authenticator = new Authenticator({
    auth,
    cacheMs: config.TOKEN_CACHE_SECONDS * 1000,
    ...(tokenKey ? { local: tokenKey } : {}),
    onChecked: (by) => metrics.tokenChecks.inc({ by }),
  });
  const acks = new AckBatcher({
    collect,
    log,
    onRefused: (n) => metrics.stage('ack_refused').inc(n),
  });
  const replay = new Replay({
    collect,
    firstPages: new FirstPages({ collect, limit: REPLAY_PAGE }),
    delivered: new DeliveredBatcher({ collect, log }),
    log,
    lowWaterBytes: config.WS_MAX_BUFFERED_BYTES / 4,
  });
  const bindings = new Bindings({
    routes: new Routes(redis, config.ROUTE_TTL_SECONDS * 1000),
    nodeId: () => host.id,
    users: () => hub.userIds(),
    ttlMs: config.ROUTE_TTL_SECONDS * 1000,
    log,
  });
  const keepAlive = new KeepAlive({
    connections: () => hub.connections(),
    intervalMs: config.WS_PING_INTERVAL,
  });
  const delivery = new Delivery({
    hub,
    log,
    delivered: metrics.stage('delivered'),
    latency: metrics.latency,
  });
  // Bound once: counted per message and per socket.
  const limits: ConnectionLimits = {
    maxBufferedBytes: config.WS_MAX_BUFFERED_BYTES,
    pushed: metrics.stage('pushed'),
    frames: {
      maxFramesPerSecond: config.WS_MAX_FRAMES_PER_SECOND,
      maxInvalidFrames: config.WS_MAX_INVALID_FRAMES,
      invalidWindowMs: config.WS_PING_INTERVAL,
    },
  };
  const maxConnections = socketCapacity(config.WS_MAX_CONNECTIONS, openFilesLimit());
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.WS_MAX_PAYLOAD,
    clientTracking: false,
  });

  // ---- a socket's life: upgrade, open, frames, close -------------------------------
  async function open(ws: WebSocket, userId: string, tokenExpiresAt: number): Promise<void> {
    const conn = new Connection(ws, userId, tokenExpiresAt, limits);
    ws.on('pong', () => (conn.alive = true));
    // ws answers pings itself (and cuts a peer that leaves 60 pongs unsent, the default
    // maxPendingAutoPongs); they count against the frame budget like any frame.
    ws.on('ping', () => conn.countFrame());
    ws.on('message', (data, isBinary) => {
      const acked = conn.receive(data, isBinary);
      if (acked !== undefined) acks.add(userId, acked);
    });
    ws.on('error', (err) => log.debug({ err: err.message, userId }, 'socket error'));
    ws.on('close', () => void close(conn));
    const first = hub.add(conn);
    metrics.connections.set(hub.connectionCount);
    // Bound first, replayed second: anything stored after the replay's query is routed
    // live. A failed bind is redone by the next renewal; the replay runs anyway.
    if (first) await bindings.bind(userId);
    await replay.run(conn);
  }

  async function close(conn: Connection): Promise<void> {
    const last = hub.remove(conn);
    metrics.connections.set(hub.connectionCount);
    // A draining node unbinds everyone itself, once its sockets are closed.
    if (last && !host.isDraining) await bindings.unbind(conn.userId);
  }

  host.server.on(
    'upgrade',
    upgradeHandler({
      authenticator,
      isDraining: () => host.isDraining,
      isOutOfRouting: agentLostNow,
      isFull: () => hub.connectionCount >= maxConnections,
      socketsOf: (userId) => hub.connectionsOf(userId)?.size ?? 0,
      maxSocketsPerUser: config.WS_MAX_SOCKETS_PER_USER,
      wss,
      open: (ws, userId, tokenExpiresAt) => void open(ws, userId, tokenExpiresAt),
      log,
    }),
  );
  wss.on('wsClientError', handshakeRefusal(log));
  // /ws without the upgrade headers (a browser tab, curl): say what the endpoint wants.
  host.routes.get('/ws', (ctx) => {
    ctx.set('Upgrade', 'websocket');
    throw new HttpError(
      426,
      'upgrade_required',
      '/ws opens a WebSocket: send Connection: Upgrade and Upgrade: websocket',
    );
  });
  host.handle(forwardHop, ({ messages }) => delivery.forward(messages));
  // After a Redis restart every binding is gone: re-create them as soon as it is back.
  redis.on('ready', () => void bindings.renew());
  // A binding re-created by a renewal had lapsed or been removed (a stall, an eviction,
  // Redis lost): messages routed meanwhile reached no one, so the user gets a replay.
  bindings.onRebound((users) => {
    for (const userId of users) replay.again(hub.connectionsOf(userId) ?? []);
  });

  // ---- out of routing: a node whose Consul agent is gone sends its clients elsewhere ----
  // Dispatch no longer routes to it (its agent runs its checks and holds its entry), so its
  // users would get nothing live until the agent is back: close their sockets with 1012,
  // and their clients reconnect through /v1/connect to a node in routing.
  const agentLost = (): boolean => (host.registration?.agentUnreachableMs() ?? 0) > AGENT_LOST_MS;
  // The last sync may be seconds old: an agent that restarted meanwhile has put this node
  // back in routing, so ask again before refusing a client or closing sockets.
  async function agentLostNow(): Promise<boolean> {
    if (!agentLost()) return false;
    await host.registration?.sync();
    return agentLost();
  }
  let agentWatch: NodeJS.Timeout | undefined;
  async function leaveIfAgentLost(): Promise<void> {
    if (hub.connectionCount === 0 || !(await agentLostNow()) || hub.connectionCount === 0) return;
    log.warn(
      { sockets: hub.connectionCount },
      'consul agent lost: out of routing, closing every socket (1012) so its clients move',
    );
    for (const conn of [...hub.connections()])
      conn.socket.close(CloseCode.ServiceRestart, 'node out of routing: reconnect');
  }

  // ---- lifecycle --------------------------------------------------------------------
  host.onStart(async () => {
    await redis.connect();
    await Promise.all([authView.start(), collectView.start()]);
    tokenKey?.start();
  });
  host.onStarted(() => {
    bindings.start();
    keepAlive.start();
    agentWatch = setInterval(() => void leaveIfAgentLost(), 1000);
  });
  host.onDrain(async () => {
    bindings.stop();
    keepAlive.stop();
    clearInterval(agentWatch);
    await drain({ hub, acks, bindings });
  });
  host.onClose(async () => {
    tokenKey?.stop();
    authView.stop();
    collectView.stop();
    auth.close();
    collect.close();
    wss.close();
    redis.disconnect();
  });
  return host;
}
