import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { REPLAY_ATTEMPTS, REPLAY_DEDUPE_MS, REPLAY_LIMIT } from '../core/tuning.js';
import { deliveredHop, unackedHop, type Envelope } from '../protocol/hops.js';
import type { Connection } from './connection.js';
import { messageFrame } from './delivery.js';

export interface ReplayOptions {
  /** collect's instances (only `call` is used). */
  collect: Pick<Peers, 'call'>;
  log: Logger;
}

/**
 * The replay: on connect, a socket gets its user's unacked messages from collect
 * (`unackedHop`, oldest first), then the live frames queued while they were sent; the
 * replayed ids are marked delivered (`deliveredHop`). A replay that fails releases the
 * queued frames at once and is tried again in the background.
 */
export class Replay {
  constructor(private readonly o: ReplayOptions) {}

  async run(conn: Connection, attempt = 1): Promise<void> {
    const { collect, log } = this.o;
    let unacked: Envelope[] = [];
    try {
      const res = await collect.call(unackedHop, { userId: conn.userId, limit: REPLAY_LIMIT });
      unacked = res.messages;
    } catch (err) {
      // Live messages must not wait on collect: release them, and try the replay again
      // in the background (what it resends, the client drops as a duplicate).
      const retry = attempt < REPLAY_ATTEMPTS && conn.isOpen;
      log.warn(
        { err: (err as Error).message, userId: conn.userId, attempt, retry },
        'replay of unacked messages failed',
      );
      if (retry) setTimeout(() => void this.run(conn, attempt + 1), attempt * 1000).unref();
    }
    const sent = new Set<string>();
    for (const m of unacked) {
      if (conn.push(m.id, messageFrame(m))) sent.add(m.id);
    }
    const queued = conn.queuedDuringReplay ?? [];
    conn.queuedDuringReplay = undefined;
    for (const q of queued) {
      if (!sent.has(q.id)) conn.push(q.id, q.frame);
    }
    if (sent.size === 0) return;
    conn.replayed = sent;
    setTimeout(() => (conn.replayed = undefined), REPLAY_DEDUPE_MS).unref();
    collect.call(deliveredHop, { ids: [...sent] }).catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'could not mark replayed messages delivered');
    });
  }
}
