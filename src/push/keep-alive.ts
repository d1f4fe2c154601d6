import { WebSocket } from 'ws';
import { KEEP_ALIVE_SLICE, KEEP_ALIVE_SPREAD } from '../core/tuning.js';
import { CloseCode } from '../protocol/frames.js';
import type { Connection } from './connection.js';

export interface KeepAliveOptions {
  /** The node's open sockets (the hub's). */
  connections: () => Iterable<Connection>;
  /** WS_PING_INTERVAL */
  intervalMs: number;
  /** Sockets handled per turn of the event loop. Default KEEP_ALIVE_SLICE. */
  sliceSize?: number;
  /** Epoch milliseconds; tests pass their own clock. */
  now?: () => number;
}

/**
 * Every WS_PING_INTERVAL: closes sockets whose token expired (4001), cuts sockets that
 * showed no sign of life since the last round (no close frame: they are not listening any
 * more), and pings the others. A sign of life is a protocol-level pong (push-service.ts) or
 * a heartbeat ping frame from the client (connection.ts): clients of either kind stay.
 *
 * A round takes its sockets a slice at a time, its slices spread over a quarter of the
 * interval, so that neither the pings nor the pongs they bring back hold the event loop
 * (and the node's health check) for long. Each socket keeps its place in the round (the
 * hub keeps them in the order they came), so it is judged an interval after its ping.
 */
export class KeepAlive {
  private timer: NodeJS.Timeout | undefined;
  /** The pending slice of the current round. */
  private sliceTimer: NodeJS.Timeout | undefined;
  private lastRoundAt = 0;
  private readonly now: () => number;
  private readonly sliceSize: number;

  constructor(private readonly o: KeepAliveOptions) {
    this.now = o.now ?? Date.now;
    this.sliceSize = Math.max(1, o.sliceSize ?? KEEP_ALIVE_SLICE);
  }

  start(): void {
    this.lastRoundAt = this.now();
    this.timer = setInterval(() => this.round(), this.o.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.sliceTimer);
  }

  /** One round of pings: its first slice now, the others later (an unfinished previous
   *  round is dropped: this one covers every socket again). */
  round(): void {
    clearTimeout(this.sliceTimer);
    const now = this.now();
    // After a stall (the process was stopped, or the loop blocked) the pongs of the last
    // round are still unread in the sockets: judge no one on that round.
    const stalled = now - this.lastRoundAt > 1.5 * this.o.intervalMs;
    this.lastRoundAt = now;
    const conns = [...this.o.connections()];
    const slices = Math.ceil(conns.length / this.sliceSize);
    const gapMs = slices > 1 ? (this.o.intervalMs * KEEP_ALIVE_SPREAD) / (slices - 1) : 0;
    const runSlice = (from: number): void => {
      const to = Math.min(from + this.sliceSize, conns.length);
      const sliceNow = this.now();
      for (let i = from; i < to; i++) this.visit(conns[i]!, sliceNow, stalled);
      if (to < conns.length) this.sliceTimer = setTimeout(() => runSlice(to), gapMs);
    };
    runSlice(0);
  }

  private visit(conn: Connection, now: number, stalled: boolean): void {
    if (conn.socket.readyState === WebSocket.CLOSED) return; // gone since the round began
    if (conn.tokenExpiresAt <= now) conn.socket.close(CloseCode.TokenExpired, 'token expired');
    else if (!conn.alive && !stalled) conn.socket.terminate();
    else {
      conn.alive = false;
      conn.socket.ping();
    }
  }
}
