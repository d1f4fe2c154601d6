import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { ServiceView } from '../core/discovery.js';
import { bearer, isCanonicalTarget, plainResponse } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { Peers } from '../core/peers.js';
import {
  CloseCode,
  parseClientFrame,
  type ErrorFrame,
  type MessageFrame,
} from '../protocol/frames.js';
import { deliveredHop, forwardHop, unackedHop, type Envelope } from '../protocol/hops.js';
import { createRedis, redisProbe } from '../core/redis.js';
import { Routes } from '../core/routes.js';
import { ServiceHost } from '../core/service-host.js';
import { AckBatcher } from './ack-batcher.js';
import { Authenticator } from './authenticator.js';
import { Hub, type Connection } from './hub.js';

const REPLAY_LIMIT = 1000;
/** How long a replayed id is remembered against a late live copy from dispatch. */
const REPLAY_DEDUPE_MS = 30_000;
const MAX_TRACKED_UNACKED = 1000;
const REPLAY_ATTEMPTS = 5;
/** How long a drain waits for clients to ack what they were sent before closing them. */
const DRAIN_ACK_WAIT_MS = 2000;

/**
 * push: a node holding WebSocket connections. It binds each connected user to itself
 * in Redis (routes), pushes what dispatch forwards to the user's sockets, replays a
 * user's unacked messages on connect and passes acks on to collect.
 */
export function createPushService(config: Config, log: Logger, consul: ConsulClient): ServiceHost {
  const redis = createRedis(config.REDIS_URL, log, () => metrics.dependencyFailed('redis'));
  const routes = new Routes(redis, config.ROUTE_TTL_SECONDS * 1000);
  const hub = new Hub();
  const host = new ServiceHost({
    config,
    log,
    consul,
    probes: {
      redis: redisProbe(redis),
    },
    meta: () => ({ ws_url: wsUrl(), connections: String(hub.connectionCount) }),
  });
  // Behind a load balancer or ingress, clients need the public URL, not the pod's address.
  const wsUrl = (): string =>
    config.WS_PUBLIC_URL ?? `ws://${config.advertiseAddress}:${host.port}/ws`;
  const { metrics } = host;
  const consulError = (): void => void metrics.dependencyFailed('consul');
  // Bound once: these are counted per message and per socket.
  const pushedCount = metrics.stage('pushed');
  const deliveredCount = metrics.stage('delivered');
  const authView = new ServiceView({ consul, log, service: 'auth', onError: consulError });
  const collectView = new ServiceView({ consul, log, service: 'collect', onError: consulError });
  const peerOptions = { secret: config.secrets.INTERNAL_SECRET, timeoutMs: config.PEER_TIMEOUT };
  const auth = new Peers({ ...peerOptions, view: authView, whenNonePassing: 'try-last-known' });
  const authenticator = new Authenticator(auth, config.TOKEN_CACHE_SECONDS * 1000);
  const collect = new Peers({ ...peerOptions, view: collectView });
  const acks = new AckBatcher(collect, log);
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.WS_MAX_PAYLOAD,
    clientTracking: false,
  });

  // ---- socket → user ---------------------------------------------------------

  host.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void upgrade(req, socket, head).catch((err: unknown) => {
      log.error({ err }, 'upgrade failed');
      rejectUpgrade(socket, 500, 'internal', 'internal error');
    });
  });

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (!isCanonicalTarget(req.url) || url.pathname !== '/ws')
      return rejectUpgrade(socket, 404, 'not_found', 'WebSocket endpoint is /ws');
    if (host.isDraining)
      return rejectUpgrade(
        socket,
        503,
        'draining',
        'this node is shutting down: ask /v1/connect for another',
      );
    const token = url.searchParams.get('token') ?? bearer(req.headers.authorization);
    const outcome = await authenticator.verify(token ?? undefined);
    if (!outcome.ok) return rejectUpgrade(socket, outcome.status, outcome.code, outcome.message);
    if (socket.destroyed) return;
    wss.handleUpgrade(req, socket, head, (ws) => void open(ws, outcome.userId, outcome.expiresAt));
  }

  async function open(ws: WebSocket, userId: string, tokenExpiresAt: number): Promise<void> {
    const conn: Connection = {
      ws,
      userId,
      tokenExpiresAt,
      alive: true,
      held: [],
      replayed: undefined,
      unacked: undefined,
    };
    ws.on('pong', () => (conn.alive = true));
    ws.on('message', (data, isBinary) => onFrame(conn, data, isBinary));
    ws.on('error', (err) => log.debug({ err: err.message, userId }, 'socket error'));
    ws.on('close', () => void onClose(conn));
    const first = hub.add(conn);
    metrics.connections.set(hub.connectionCount);
    if (first) {
      try {
        await routes.add(host.id, userId);
      } catch (err) {
        // The periodic refresh binds the user once Redis is back; replay still runs.
        log.warn({ err: (err as Error).message, userId }, 'could not bind user in redis');
      }
    }
    // Bound first, replayed second: anything stored after the query below is routed live.
    await replay(conn);
  }

  async function replay(conn: Connection, attempt = 1): Promise<void> {
    let pending: Envelope[] = [];
    try {
      const res = await collect.call(unackedHop, { userId: conn.userId, limit: REPLAY_LIMIT });
      pending = res.messages;
    } catch (err) {
      // Live messages must not wait on collect: release them, and try the replay again
      // in the background (what it resends, the client drops as a duplicate).
      const retry = attempt < REPLAY_ATTEMPTS && conn.ws.readyState === conn.ws.OPEN;
      log.warn(
        { err: (err as Error).message, userId: conn.userId, attempt, retry },
        'replay of pending messages failed',
      );
      if (retry) setTimeout(() => void replay(conn, attempt + 1), attempt * 1000).unref();
    }
    const sent = new Set<string>();
    for (const m of pending) {
      if (push(conn, m.id, frameOf(m))) sent.add(m.id);
    }
    const held = conn.held ?? [];
    conn.held = undefined;
    for (const h of held) {
      if (!sent.has(h.id)) push(conn, h.id, h.frame);
    }
    if (sent.size > 0) {
      conn.replayed = sent;
      setTimeout(() => (conn.replayed = undefined), REPLAY_DEDUPE_MS).unref();
      collect.call(deliveredHop, { ids: [...sent] }).catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, 'could not mark replayed messages delivered');
      });
    }
  }

  function onFrame(conn: Connection, data: RawData, isBinary: boolean): void {
    if (isBinary) return sendError(conn, 'binary_not_supported', 'send JSON text frames');
    const frame = parseClientFrame(data.toString());
    if (!('type' in frame)) return sendError(conn, frame.code, frame.message);
    conn.unacked?.delete(frame.id);
    acks.add(conn.userId, frame.id);
  }

  async function onClose(conn: Connection): Promise<void> {
    const last = hub.remove(conn);
    metrics.connections.set(hub.connectionCount);
    if (!last || host.isDraining) return;
    try {
      await routes.remove(host.id, conn.userId);
    } catch (err) {
      log.warn(
        { err: (err as Error).message, userId: conn.userId },
        'could not unbind user in redis: the binding will expire',
      );
    }
  }

  // ---- node → socket ---------------------------------------------------------

  function frameOf(m: Envelope): string {
    return JSON.stringify({
      type: 'message',
      id: m.id,
      payload: m.payload,
      createdAt: m.createdAt,
    } satisfies MessageFrame);
  }

  /** Sends a message frame and remembers that its ack is awaited. */
  function push(conn: Connection, id: string, frame: string): boolean {
    if (!send(conn, frame)) return false;
    pushedCount.inc();
    conn.unacked ??= new Set();
    if (conn.unacked.size < MAX_TRACKED_UNACKED) conn.unacked.add(id);
    return true;
  }

  /** Sends one frame; false when the socket cannot take it. */
  function send(conn: Connection, frame: string): boolean {
    const { ws } = conn;
    if (ws.readyState !== ws.OPEN) return false;
    if (ws.bufferedAmount > config.WS_MAX_BUFFERED_BYTES) {
      ws.close(CloseCode.SlowConsumer, 'slow consumer');
      return false;
    }
    ws.send(frame);
    return true;
  }

  function sendError(conn: Connection, code: string, message: string): void {
    send(conn, JSON.stringify({ type: 'error', code, message } satisfies ErrorFrame));
  }

  /** Pushes each message to every socket of its user here; returns the ids that reached one. */
  function deliver(messages: Envelope[]): string[] {
    const delivered: string[] = [];
    const now = Date.now();
    const debug = log.isLevelEnabled('debug');
    for (const m of messages) {
      const conns = hub.connectionsOf(m.to);
      if (!conns) continue;
      const frame = frameOf(m);
      let reached = false;
      for (const conn of conns) {
        if (conn.held) {
          conn.held.push({ id: m.id, frame });
          reached = true;
        } else if (conn.replayed?.delete(m.id)) reached = true;
        else if (push(conn, m.id, frame)) reached = true;
      }
      if (reached) {
        delivered.push(m.id);
        metrics.latency.observe((now - Date.parse(m.createdAt)) / 1000);
        if (debug) log.debug({ msgId: m.id, to: m.to, sockets: conns.size }, 'pushed');
      }
    }
    deliveredCount.inc(delivered.length);
    return delivered;
  }

  host.handle(forwardHop, ({ messages }) => ({ delivered: deliver(messages) }));

  // ---- keeping routes and sockets alive -------------------------------------

  let refreshTimer: NodeJS.Timeout | undefined;
  let pingTimer: NodeJS.Timeout | undefined;
  const refreshRoutes = async (): Promise<void> => {
    try {
      await routes.addAll(host.id, hub.userIds());
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'route refresh failed: will retry');
    }
  };
  // After a Redis restart every binding is gone: rebuild them as soon as it is back.
  redis.on('ready', () => void refreshRoutes());

  let lastPingAt = Date.now();
  function pingAll(): void {
    const now = Date.now();
    // After a stall (the process was stopped, or the loop blocked) the pongs of the last
    // round are still unread in the sockets: judge no one on that round.
    const stalled = now - lastPingAt > 1.5 * config.WS_PING_INTERVAL;
    lastPingAt = now;
    for (const conn of hub.connections()) {
      if (conn.tokenExpiresAt <= now) conn.ws.close(CloseCode.TokenExpired, 'token expired');
      else if (!conn.alive && !stalled) conn.ws.terminate();
      else {
        conn.alive = false;
        conn.ws.ping();
      }
    }
  }

  // ---- lifecycle -------------------------------------------------------------

  host.onStart(async () => {
    await redis.connect();
    await Promise.all([authView.start(), collectView.start()]);
  });
  host.onStarted(() => {
    // Renew at a third of the expiry: two renewals can fail before a binding lapses.
    refreshTimer = setInterval(() => void refreshRoutes(), (config.ROUTE_TTL_SECONDS * 1000) / 3);
    pingTimer = setInterval(pingAll, config.WS_PING_INTERVAL);
  });
  host.onDrain(async () => {
    clearInterval(refreshTimer);
    clearInterval(pingTimer);
    const users = [...hub.userIds()];
    // Out of routing now, so nothing new arrives: let clients ack what they have, so
    // that they are not sent it again after they reconnect elsewhere.
    const waitUntil = Date.now() + DRAIN_ACK_WAIT_MS;
    const awaiting = (): boolean =>
      [...hub.connections()].some((c) => c.unacked !== undefined && c.unacked.size > 0);
    while (awaiting() && Date.now() < waitUntil) await new Promise((r) => setTimeout(r, 20));
    await acks.flush();
    for (const conn of [...hub.connections()])
      conn.ws.close(CloseCode.ServiceRestart, 'node restarting: reconnect');
    await Promise.allSettled(users.map((u) => routes.remove(host.id, u)));
    await acks.flush();
  });
  host.onClose(async () => {
    authView.stop();
    collectView.stop();
    auth.close();
    collect.close();
    wss.close();
    redis.disconnect();
  });
  return host;
}

/** Answers a refused upgrade with a plain HTTP response and the JSON error body. */
function rejectUpgrade(socket: Duplex, status: number, code: string, message: string): void {
  if (socket.destroyed) return;
  const reason =
    {
      401: 'Unauthorized',
      404: 'Not Found',
      500: 'Internal Server Error',
      503: 'Service Unavailable',
    }[status] ?? 'Error';
  socket.end(plainResponse(status, reason, { error: { code, message } }));
}
