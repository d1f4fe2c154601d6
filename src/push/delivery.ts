import type { Logger } from '../core/logger.js';
import type { Envelope } from '../protocol/hops.js';
import type { Connection } from './connection.js';
import type { Hub } from './hub.js';

export interface DeliveryOptions {
  hub: Pick<Hub<Connection>, 'connectionsOf'>;
  log: Logger;
  /** Stage `delivered`: messages that reached at least one socket of their user. */
  delivered: { inc(n: number): void };
  /** Seconds from ingestion to the write on a socket. */
  latency: { observe(seconds: number): void };
}

/**
 * The forward hop's end: pushes each message dispatch forwards to every socket of its
 * user on this node, as the frame text collect built.
 */
export class Delivery {
  constructor(private readonly o: DeliveryOptions) {}

  /** Pushes each message to every socket of its user here; returns the ids that reached one. */
  forward(messages: readonly Envelope[]): string[] {
    const { hub, log } = this.o;
    const delivered: string[] = [];
    const now = Date.now();
    const debug = log.isLevelEnabled('debug');
    for (const m of messages) {
      const conns = hub.connectionsOf(m.to);
      if (!conns) continue;
      let reached = false;
      for (const conn of conns) if (offer(conn, m)) reached = true;
      if (reached) {
        delivered.push(m.id);
        this.o.latency.observe((now - Date.parse(m.createdAt)) / 1000);
        if (debug) log.debug({ msgId: m.id, to: m.to, sockets: conns.size }, 'pushed');
      }
    }
    this.o.delivered.inc(delivered.length);
    return delivered;
  }
}

/** One message to one socket: queued while the socket's replay is sent, skipped when
 *  that replay already pushed it (unless it is a redelivery: its ack is overdue), pushed
 *  otherwise. True when the socket has it or will. */
function offer(conn: Connection, m: Envelope): boolean {
  const { id, frame } = m;
  if (conn.queuedDuringReplay) {
    conn.queuedDuringReplay.push({ id, frame });
    return true;
  }
  const replayHadIt = conn.replayed?.delete(id) ?? false;
  if (replayHadIt && !m.redelivery) return true;
  return conn.push(id, frame);
}
