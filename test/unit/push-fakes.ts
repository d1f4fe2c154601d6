// Small fakes for unit tests of the push node's parts: a socket and a peer service.
import { WebSocket } from 'ws';
import type { Envelope, Hop } from '../../src/protocol/hops.js';
import { messageFrameText, type ServerFrame } from '../../src/protocol/frames.js';
import { Connection, type Socket } from '../../src/push/connection.js';

/** A socket that records what the node does to it. */
export class FakeSocket implements Socket {
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  terminated = false;
  pings = 0;

  send(data: string): void {
    this.sent.push(data);
  }

  close(code: number, reason: string): void {
    this.closed = { code, reason };
    this.readyState = WebSocket.CLOSING;
  }

  terminate(): void {
    this.terminated = true;
    this.readyState = WebSocket.CLOSED;
  }

  ping(): void {
    this.pings++;
  }

  get frames(): ServerFrame[] {
    return this.sent.map((s) => JSON.parse(s) as ServerFrame);
  }

  /** Ids of the message frames sent, in order. */
  get messageIds(): string[] {
    return this.frames.flatMap((f) => (f.type === 'message' ? [f.id] : []));
  }
}

/** A connection on a fake socket, and a count of its pushes. */
export function fakeConnection(
  userId: string,
  o: {
    tokenExpiresAt?: number;
    maxBufferedBytes?: number;
    maxFramesPerSecond?: number;
    maxInvalidFrames?: number;
  } = {},
): { conn: Connection; socket: FakeSocket; pushed: () => number } {
  const socket = new FakeSocket();
  let pushed = 0;
  const conn = new Connection(socket, userId, o.tokenExpiresAt ?? Number.MAX_SAFE_INTEGER, {
    maxBufferedBytes: o.maxBufferedBytes ?? 1 << 20,
    pushed: { inc: () => void pushed++ },
    frames: {
      maxFramesPerSecond: o.maxFramesPerSecond ?? 2000,
      maxInvalidFrames: o.maxInvalidFrames ?? 20,
      invalidWindowMs: 20_000,
    },
  });
  return { conn, socket, pushed: () => pushed };
}

/** A peer service: records each call and answers with `answer` (which may throw). */
export class FakePeers {
  readonly calls: { path: string; body: unknown }[] = [];

  constructor(private readonly answer: (path: string, body: unknown) => unknown) {}

  async call<Req, Res>(hop: Hop<Req, Res>, body: Req): Promise<Res> {
    this.calls.push({ path: hop.path, body });
    return (await this.answer(hop.path, body)) as Res;
  }

  callsTo(path: string): unknown[] {
    return this.calls.filter((c) => c.path === path).map((c) => c.body);
  }
}

/** A message as dispatch forwards it. */
export const envelope = (id: string, to: string, payload: unknown = id): Envelope => {
  const createdAt = new Date().toISOString();
  return { id, to, createdAt, frame: messageFrameText({ id, payload, createdAt }) };
};
