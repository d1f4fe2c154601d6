// The wire protocol, defined once: WebSocket frames, HTTP bodies and close codes.
// Server, client library and tests all import from here.

/** A message as it travels between services and to the socket. */
export interface Envelope {
  id: string;
  to: string;
  payload: unknown;
  /** ISO-8601 */
  createdAt: string;
}

export type MessageStatus = 'pending' | 'delivered' | 'acked' | 'failed';

// ---- WebSocket frames -------------------------------------------------------

export interface MessageFrame {
  type: 'message';
  id: string;
  payload: unknown;
  createdAt: string;
}

export interface ErrorFrame {
  type: 'error';
  code: string;
  message: string;
}

export type ServerFrame = MessageFrame | ErrorFrame;

export interface AckFrame {
  type: 'ack';
  id: string;
}

export type ClientFrame = AckFrame;

/**
 * Close codes a push node sends. 1000-1015 are RFC 6455's; 4000-4999 are ours.
 * 1009 (message too big) is sent by ws itself when a frame exceeds WS_MAX_PAYLOAD.
 */
export const CloseCode = {
  /** The node is shutting down or draining: reconnect (through /v1/connect) at once. */
  ServiceRestart: 1012,
  /** The socket's send buffer grew past WS_MAX_BUFFERED_BYTES: the client reads too slowly. */
  SlowConsumer: 4008,
  /** The token this socket was opened with has expired: get a new one and reconnect. */
  TokenExpired: 4001,
} as const;

// ---- HTTP bodies ------------------------------------------------------------

export interface ErrorBody {
  error: { code: string; message: string };
}

export interface TokenRequest {
  userId: string;
  ttlSeconds?: number;
}

export interface TokenResponse {
  token: string;
  expiresAt: string;
}

export interface VerifyResponse {
  userId: string;
  expiresAt: string;
}

export interface IngestResponse {
  ids: string[];
}

export interface MessageView {
  id: string;
  to: string;
  status: MessageStatus;
  payload: unknown;
  createdAt: string;
  deliveredAt?: string;
  ackedAt?: string;
  /** How many times the message was pushed to a socket. */
  attempts: number;
  failedAt?: string;
  failReason?: string;
}

export interface ConnectResponse {
  url: string;
}

/** collect → dispatch and dispatch → push node */
export interface DeliverRequest {
  messages: Envelope[];
}

export interface DeliverResponse {
  /** Ids that reached at least one socket of their user. */
  delivered: string[];
}

/** dispatch → collect: what became of each message handed over. Ids in neither list
 *  could not be handed to a node that should have them: collect retries those soon. */
export interface DispatchResponse {
  delivered: string[];
  /** The user has no live route (or its nodes have no socket of the user): wait for a connect. */
  unrouted: string[];
}

/** Header that guards every /internal/ route. */
export const INTERNAL_SECRET_HEADER = 'x-internal-secret';
