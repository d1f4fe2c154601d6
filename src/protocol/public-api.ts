// Bodies of the public HTTP API (auth, collect, dispatch), as clients see them.

export type MessageStatus = 'pending' | 'delivered' | 'acked' | 'failed';

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
  /** The push node to connect to. */
  url: string;
  /** A few other push nodes, in no order: when the socket to `url` is lost, a client
   *  connects to one of them, at random, without asking /v1/connect again (and asks it
   *  when that one refuses). Empty when `url`'s node is the only one. */
  fallbacks: string[];
}
