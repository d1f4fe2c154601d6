import { WebSocket, type RawData } from 'ws';
import { MAX_ACKS_OWED, MAX_TRACKED_UNACKED } from '../core/tuning.js';
import { CloseCode, parseClientFrame, PONG_FRAME, type ErrorFrame } from '../protocol/frames.js';
import { FrameBudget, type FrameLimits } from './frame-budget.js';

/** What a connection uses of its WebSocket: ws's WebSocket has it all, tests pass a fake. */
export interface Socket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code: number, reason: string): void;
  terminate(): void;
  ping(): void;
}

/** What every connection of a node shares. */
export interface ConnectionLimits {
  /** WS_MAX_BUFFERED_BYTES: a socket whose send buffer grows past it is a slow consumer. */
  maxBufferedBytes: number;
  /** Counts each message frame written to a socket (stage `pushed`). */
  pushed: { inc(): void };
  /** What a client may send. */
  frames: FrameLimits;
}

/**
 * One client socket of a user on this node, with what the node tracks about it. Every
 * frame to the client goes through `send`, which closes a slow consumer instead of
 * letting its buffer grow.
 */
export class Connection {
  /** Whether the socket showed a sign of life since the last ping round (see keep-alive.ts):
   *  a protocol-level pong, or a heartbeat ping frame from the client. */
  alive = true;
  /** Live frames (id → frame text) that arrived while the socket's replay was being sent:
   *  they are pushed right after it, so the user sees messages in order. Undefined once the
   *  replay is out. */
  queuedDuringReplay: Map<string, string> | undefined = new Map();
  /** Ids this socket got in its replay (on connect, from the replay's first push on): a
   *  message stored just before the replay query may still come through dispatch
   *  afterwards, once, and that copy is not pushed again. A later redelivery (the ack did
   *  not come) is pushed as usual. */
  replayed: Set<string> | undefined;
  /** A replay runs for this socket now; `replayAgain`: one more was asked for meanwhile. */
  replaying = false;
  replayAgain = false;
  /** Ids pushed and not acked yet, so a drain can wait for their acks (bounded by
   *  MAX_TRACKED_UNACKED; created on the first push, so an idle connection costs little). */
  unacked: Set<string> | undefined;
  /** What the client may still send (created on its first frame). */
  private budget: FrameBudget | undefined;
  /** Frames the client may send beyond its budget: one per message pushed to it. */
  private acksOwed = 0;
  /** Closed for flooding: what the client still sends is ignored. (Acks that reach a
   *  socket closed for any other reason, a drain for one, are still passed on.) */
  private flooded = false;

  constructor(
    readonly socket: Socket,
    readonly userId: string,
    readonly tokenExpiresAt: number,
    private readonly limits: ConnectionLimits,
  ) {}

  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** Sends one frame; false when the socket cannot take it (closed, or a slow consumer,
   *  which this closes with 4008). */
  send(frame: string): boolean {
    const { socket } = this;
    if (!this.isOpen) return false;
    if (socket.bufferedAmount > this.limits.maxBufferedBytes) {
      socket.close(CloseCode.SlowConsumer, 'slow consumer');
      return false;
    }
    socket.send(frame);
    return true;
  }

  /** Pushes a message frame and remembers that its ack is awaited; false when not sent. */
  push(id: string, frame: string): boolean {
    if (!this.send(frame)) return false;
    this.limits.pushed.inc();
    if (this.acksOwed < MAX_ACKS_OWED) this.acksOwed++;
    this.unacked ??= new Set();
    if (this.unacked.size < MAX_TRACKED_UNACKED) this.unacked.add(id);
    return true;
  }

  sendError(code: string, message: string): void {
    this.send(JSON.stringify({ type: 'error', code, message } satisfies ErrorFrame));
  }

  /** Reads one frame from the client: the id it acks; or undefined after answering a
   *  heartbeat ping with a pong, or a frame it could not accept with an error frame (the
   *  socket stays open, unless the client sends too many such frames, or too many frames
   *  at all: then it is closed with 1008, and what it still sends is ignored). */
  receive(data: RawData, isBinary: boolean): string | undefined {
    const now = Date.now();
    if (!this.countFrame(now)) return undefined;
    if (isBinary) return this.refuse(now, 'binary_not_supported', 'send JSON text frames');
    const frame = parseClientFrame(data.toString());
    if (!('type' in frame)) return this.refuse(now, frame.code, frame.message);
    if (frame.type === 'ping') {
      this.alive = true;
      this.send(PONG_FRAME);
      return undefined;
    }
    this.unacked?.delete(frame.id);
    return frame.id;
  }

  /** Counts a frame from the client (pings too) against its budget; false, after closing
   *  the socket with 1008, when the client sends faster than WS_MAX_FRAMES_PER_SECOND. */
  countFrame(now = Date.now()): boolean {
    if (this.flooded) return false;
    // Every message pushed here earns the client one frame, its ack: a client that acks a
    // replay of thousands as fast as it arrives is within its rights, not flooding.
    if (this.acksOwed > 0) {
      this.acksOwed--;
      return true;
    }
    if (this.budgetAt(now).take(now)) return true;
    this.closeFlooded(`over ${this.limits.frames.maxFramesPerSecond} frames per second`);
    return false;
  }

  /** Answers an invalid frame with an error frame, or closes the socket with 1008 when
   *  it is one too many (WS_MAX_INVALID_FRAMES within WS_PING_INTERVAL). */
  private refuse(now: number, code: string, message: string): undefined {
    if (this.budgetAt(now).takeInvalid(now)) return void this.sendError(code, message);
    this.closeFlooded(`over ${this.limits.frames.maxInvalidFrames} invalid frames`);
  }

  private closeFlooded(reason: string): void {
    this.flooded = true;
    this.socket.close(CloseCode.PolicyViolation, reason);
  }

  private budgetAt(now: number): FrameBudget {
    return (this.budget ??= new FrameBudget(this.limits.frames, now));
  }

  /** Whether some pushed message still waits for its ack. */
  get awaitingAcks(): boolean {
    return this.unacked !== undefined && this.unacked.size > 0;
  }
}
