import type { Logger } from '../core/logger.js';
import type { Envelope, ResponseOf, forwardHop } from '../protocol/hops.js';
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

  /** Pushes each message to every socket of its user here. Delivered: the ids that reached
   *  one; replayed: those a socket had just got from its replay instead (its replay reported
   *  them delivered, so they must not be counted again). */
  forward(messages: readonly Envelope[]): ResponseOf<typeof forwardHop> {
    const { hub, log } = this.o;
    const delivered: string[] = [];
    const replayed: string[] = [];
    const now = Date.now();
    const debug = log.isLevelEnabled('debug');
    for (const m of messages) {
      const conns = hub.connectionsOf(m.to);
      if (!conns) continue;
      let reached = false;
      let replayHadIt = false;
      for (const conn of conns) {
        const outcome = offer(conn, m);
        if (outcome === 'pushed') reached = true;
        else if (outcome === 'replayed') replayHadIt = true;
      }
      if (reached) {
        delivered.push(m.id);
        this.o.latency.observe((now - Date.parse(m.createdAt)) / 1000);
        if (debug) log.debug({ msgId: m.id, to: m.to, sockets: conns.size }, 'pushed');
      } else if (replayHadIt) {
        replayed.push(m.id);
        if (debug) log.debug({ msgId: m.id, to: m.to }, 'replay had it: not pushed again');
      }
    }
    this.o.delivered.inc(delivered.length);
    return { delivered, replayed };
  }
}

/** What became of a message offered to one socket. */
type Offered = 'pushed' | 'replayed' | 'missed';

/** One message to one socket: while the socket's replay is sent, skipped if the replay
 *  pushed it already, else queued (pushed after the replay, unless the replay has it by
 *  then: the replay leaves it out of what it reports, see Replay); after it, skipped when
 *  the replay pushed it (unless it is a redelivery: its ack is overdue), pushed otherwise.
 *  `missed`: the socket is gone or closing. */
function offer(conn: Connection, m: Envelope): Offered {
  const { id, frame } = m;
  if (conn.queuedDuringReplay) {
    if (conn.replayed?.has(id)) return 'replayed';
    conn.queuedDuringReplay.set(id, frame);
    return 'pushed';
  }
  const replayHadIt = conn.replayed?.delete(id) ?? false;
  if (replayHadIt && !m.redelivery) return 'replayed';
  return conn.push(id, frame) ? 'pushed' : 'missed';
}
