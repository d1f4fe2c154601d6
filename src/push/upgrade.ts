import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import { bearer, errorBody, isCanonicalTarget, plainResponse } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { HANDSHAKES_PER_TURN } from '../core/tuning.js';
import type { Authenticator } from './authenticator.js';
import { HandshakeQueue } from './handshake-queue.js';

export interface UpgradeOptions {
  authenticator: Pick<Authenticator, 'verify'>;
  isDraining: () => boolean;
  /** True while the node is out of routing (its Consul agent unreachable), asked afresh. */
  isOutOfRouting: () => Promise<boolean>;
  wss: Pick<WebSocketServer, 'handleUpgrade'>;
  /** True while the node holds as many sockets as it accepts (WS_MAX_CONNECTIONS). */
  isFull: () => boolean;
  /** How many sockets the user holds on this node now. */
  socketsOf: (userId: string) => number;
  /** WS_MAX_SOCKETS_PER_USER */
  maxSocketsPerUser: number;
  /** Takes an accepted socket, whose token belongs to userId. */
  open: (ws: WebSocket, userId: string, tokenExpiresAt: number) => void;
  log: Logger;
}

/**
 * The node's 'upgrade' listener: only `GET /ws`, spelled canonically, on a node that is
 * not draining and in routing, with a token auth accepts, becomes a WebSocket. Anything else gets a
 * plain HTTP answer with the JSON error body.
 */
export function upgradeHandler(o: UpgradeOptions) {
  const queue = new HandshakeQueue(HANDSHAKES_PER_TURN);
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    queue.push(() => {
      if (socket.destroyed) return; // the client gave up while it waited
      void upgrade(o, req, socket, head).catch((err: unknown) => {
        o.log.error({ err }, 'upgrade failed');
        refuse(o.log, socket, 500, 'internal', 'internal error');
      });
    });
  };
}

async function upgrade(
  o: UpgradeOptions,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  // Checked before parsing: `new URL` throws on some targets a hostile client sends.
  if (!isCanonicalTarget(req.url))
    return refuse(o.log, socket, 404, 'not_found', 'WebSocket endpoint is /ws');
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname !== '/ws')
    return refuse(o.log, socket, 404, 'not_found', 'WebSocket endpoint is /ws');
  const draining = (): void =>
    refuse(
      o.log,
      socket,
      503,
      'draining',
      'this node is shutting down: ask /v1/connect for another',
    );
  if (o.isDraining()) return draining();
  if (await o.isOutOfRouting())
    return refuse(
      o.log,
      socket,
      503,
      'out_of_routing',
      "this node's Consul agent is unreachable: ask /v1/connect for another",
    );
  const full = (): void =>
    refuse(
      o.log,
      socket,
      503,
      'full',
      'this node holds as many sockets as it accepts (WS_MAX_CONNECTIONS): ask /v1/connect for another',
    );
  if (o.isFull()) return full();
  const token = url.searchParams.get('token') ?? bearer(req.headers.authorization);
  const outcome = await o.authenticator.verify(token ?? undefined, () => !socket.destroyed);
  if (!outcome.ok) return refuse(o.log, socket, outcome.status, outcome.code, outcome.message);
  if (socket.destroyed) return;
  // The token check takes a round trip: a drain may have begun meanwhile, and a socket
  // let in now would be closed (or, worse, missed) by it.
  if (o.isDraining()) return draining();
  // Counted after the check, and opened in the same turn (handleUpgrade calls back at
  // once): connects racing each other cannot all slip under a limit.
  if (o.isFull()) return full();
  const held = o.socketsOf(outcome.userId);
  if (held >= o.maxSocketsPerUser)
    return refuse(
      o.log,
      socket,
      429,
      'too_many_sockets',
      `this user already holds ${held} sockets on this node, the most it may ` +
        '(WS_MAX_SOCKETS_PER_USER): close one first',
    );
  o.wss.handleUpgrade(req, socket, head, (ws) => o.open(ws, outcome.userId, outcome.expiresAt));
}

/**
 * The WebSocketServer's 'wsClientError' listener: a handshake ws finds malformed (another method, no
 * `Upgrade: websocket`, a bad key or version) gets the JSON error body like every other
 * refusal, not ws's own plain-text answer.
 */
export function handshakeRefusal(log: Logger) {
  return (err: Error, socket: Duplex): void => {
    if (err.message === 'Invalid HTTP method')
      return refuse(log, socket, 405, 'method_not_allowed', 'a WebSocket handshake is a GET');
    const versionHeader: Record<string, string> = /Sec-WebSocket-Version/.test(err.message)
      ? { 'Sec-WebSocket-Version': '13, 8' }
      : {};
    refuse(
      log,
      socket,
      400,
      'invalid_handshake',
      `${err.message}: not a WebSocket handshake (RFC 6455)`,
      versionHeader,
    );
  };
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  405: 'Method Not Allowed',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Answers a refused upgrade with a plain HTTP response and the JSON error body. */
function refuse(
  log: Logger,
  socket: Duplex,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (socket.destroyed) return;
  log.debug({ status, code }, 'upgrade refused');
  socket.end(plainResponse(status, REASONS[status] ?? 'Error', errorBody(code, message), headers));
}
