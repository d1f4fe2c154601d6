import { CloseCode } from '../protocol/frames.js';
import type { Connection } from './connection.js';

export interface KeepAliveOptions {
  /** The node's open sockets (the hub's). */
  connections: () => Iterable<Connection>;
  /** WS_PING_INTERVAL */
  intervalMs: number;
  /** Epoch milliseconds; tests pass their own clock. */
  now?: () => number;
}

/**
 * Every WS_PING_INTERVAL: closes sockets whose token expired (4001), cuts sockets that
 * showed no sign of life since the last round (no close frame: they are not listening any
 * more), and pings the others. A sign of life is a protocol-level pong (push-service.ts) or
 * a heartbeat ping frame from the client (connection.ts): clients of either kind stay.
 */
export class KeepAlive {
  private timer: NodeJS.Timeout | undefined;
  private lastRoundAt = 0;
  private readonly now: () => number;

  constructor(private readonly o: KeepAliveOptions) {
    this.now = o.now ?? Date.now;
  }

  start(): void {
    this.lastRoundAt = this.now();
    this.timer = setInterval(() => this.round(), this.o.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round of pings. */
  round(): void {
    const now = this.now();
    // After a stall (the process was stopped, or the loop blocked) the pongs of the last
    // round are still unread in the sockets: judge no one on that round.
    const stalled = now - this.lastRoundAt > 1.5 * this.o.intervalMs;
    this.lastRoundAt = now;
    for (const conn of this.o.connections()) {
      if (conn.tokenExpiresAt <= now) conn.socket.close(CloseCode.TokenExpired, 'token expired');
      else if (!conn.alive && !stalled) conn.socket.terminate();
      else {
        conn.alive = false;
        conn.socket.ping();
      }
    }
  }
}
