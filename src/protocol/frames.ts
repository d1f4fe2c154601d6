// The WebSocket protocol between a push node and its clients, defined once: the push
// node, the client library and the tests all import it from here. Browsers load this
// file as it is (the demo page), so it imports nothing.

/** A message pushed to a socket. */
export interface MessageFrame {
  type: 'message';
  id: string;
  payload: unknown;
  createdAt: string;
}

/** A frame the node could not accept; the socket stays open. */
export interface ErrorFrame {
  type: 'error';
  code: string;
  message: string;
}

/** The node's answer to a client's heartbeat ping. */
export interface PongFrame {
  type: 'pong';
}

export type ServerFrame = MessageFrame | ErrorFrame | PongFrame;

/** The text of a message's frame, as every socket of its user gets it. collect builds it
 *  once per message; dispatch and the push nodes pass it on without reading it. Given the
 *  payload's JSON, the frame is put together around it, not serialized again. */
export function messageFrameText(m: Omit<MessageFrame, 'type'> & { payloadJson?: string }): string {
  if (m.payloadJson !== undefined)
    return `{"type":"message","id":${JSON.stringify(m.id)},"payload":${m.payloadJson},"createdAt":${JSON.stringify(m.createdAt)}}`;
  return JSON.stringify({
    type: 'message',
    id: m.id,
    payload: m.payload,
    createdAt: m.createdAt,
  } satisfies MessageFrame);
}

/** The longest message id a client may ack. */
export const MAX_ACK_ID_LENGTH = 128;

/** The client's receipt for one message: the node passes it on to collect. */
export interface AckFrame {
  type: 'ack';
  id: string;
}

/**
 * The client's heartbeat: the node answers each with a pong frame and counts it as a sign
 * of life, like a protocol-level pong. A browser's WebSocket never shows protocol pings
 * to JavaScript, so a client that wants to notice a half-open connection (laptop sleep, a
 * network change, a hung node) sends these itself and gives up when nothing comes back.
 */
export interface PingFrame {
  type: 'ping';
}

export type ClientFrame = AckFrame | PingFrame;

/** The frame a client sends to ack a message. */
export function ackFrame(id: string): string {
  return JSON.stringify({ type: 'ack', id } satisfies AckFrame);
}

/** The heartbeat frames, serialized once. */
export const PING_FRAME = JSON.stringify({ type: 'ping' } satisfies PingFrame);
export const PONG_FRAME = JSON.stringify({ type: 'pong' } satisfies PongFrame);

/** Why a client frame was refused: the code and message of the error frame it gets. */
export interface FrameProblem {
  code: 'invalid_json' | 'unknown_type' | 'invalid_frame';
  message: string;
}

/** Reads one text frame from a client. */
export function parseClientFrame(text: string): ClientFrame | FrameProblem {
  let frame: unknown;
  try {
    frame = JSON.parse(text);
  } catch {
    return { code: 'invalid_json', message: 'the frame is not valid JSON' };
  }
  const type = (frame as { type?: unknown } | null)?.type;
  if (type === 'ping') return { type: 'ping' };
  if (type !== 'ack')
    return {
      code: 'unknown_type',
      message: `unknown frame type ${JSON.stringify(type ?? null)}: expected "ack" or "ping"`,
    };
  const id = (frame as { id?: unknown }).id;
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ACK_ID_LENGTH)
    return {
      code: 'invalid_frame',
      message: `an ack needs a string "id" of 1-${MAX_ACK_ID_LENGTH} characters`,
    };
  return { type: 'ack', id };
}

/**
 * Close codes a push node sends. 1000-1015 are RFC 6455's; 4000-4999 are ours.
 * 1009 (message too big) is sent by ws itself when a frame exceeds WS_MAX_PAYLOAD.
 */
export const CloseCode = {
  /** The client broke a limit on what it sends: more than WS_MAX_FRAMES_PER_SECOND frames,
   *  or more than WS_MAX_INVALID_FRAMES invalid frames within WS_PING_INTERVAL (the reason
   *  says which). Fix the client, or slow down, before reconnecting. */
  PolicyViolation: 1008,
  /** The node is shutting down or draining: reconnect (through /v1/connect) at once. */
  ServiceRestart: 1012,
  /** The socket's send buffer grew past WS_MAX_BUFFERED_BYTES: the client reads too slowly. */
  SlowConsumer: 4008,
  /** The token this socket was opened with has expired: get a new one and reconnect. */
  TokenExpired: 4001,
} as const;
