import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import {
  REPLAY_DEDUPE_MS,
  REPLAY_PAGE,
  REPLAY_POLL_MS,
  REPLAY_RETRY_MAX_MS,
} from '../core/tuning.js';
import { unackedHop, type Envelope } from '../protocol/hops.js';
import type { Connection } from './connection.js';
import type { DeliveredBatcher } from './delivered-batcher.js';
import type { FirstPages } from './first-pages.js';

export interface ReplayOptions {
  /** collect's instances (only `call` is used). */
  collect: Pick<Peers, 'call'>;
  /** Asks each first page together with those of other connects. */
  firstPages: Pick<FirstPages, 'ask'>;
  /** Passes the ids pushed to collect (`deliveredHop`), with those of other replays. */
  delivered: Pick<DeliveredBatcher, 'add'>;
  log: Logger;
  /** The next page waits until the socket's send buffer is below this (flow control). */
  lowWaterBytes: number;
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms).unref());

/**
 * The replay: a socket gets its user's unacked messages from collect (`unackedHop`), page
 * by page in store order until none is left, each page only once the socket has sent most
 * of the one before; every message pushed is marked delivered (`deliveredHop`), so each
 * push counts as an attempt — but one whose live copy waits in the socket's queue: the
 * forward hop that brought that copy counted it, and the copy is not pushed again. It runs
 * on connect — live frames that arrive meanwhile are queued and pushed right after it — and
 * again for a user whose binding had to be re-created (`again`): messages routed while the
 * binding was gone reached nobody.
 *
 * A page collect cannot serve is asked again with backoff for as long as the socket is
 * open: a connected user is never left with messages that wait for their next connect.
 * Queued live frames do not wait for that: they are released at the first failure.
 */
export class Replay {
  constructor(private readonly o: ReplayOptions) {}

  /** Replays to one socket; a replay asked for while one runs runs once more after it. */
  async run(conn: Connection): Promise<void> {
    if (conn.replaying) {
      conn.replayAgain = true;
      return;
    }
    conn.replaying = true;
    try {
      do {
        conn.replayAgain = false;
        await this.pass(conn);
      } while (conn.replayAgain && conn.isOpen);
    } finally {
      conn.replaying = false;
    }
  }

  /** The user's binding here was re-created: replay to each of their sockets here. */
  again(conns: Iterable<Connection>): void {
    for (const conn of conns) void this.run(conn);
  }

  private async pass(conn: Connection): Promise<void> {
    const sent = new Set<string>();
    // On connect, what this replay has pushed is the socket's `replayed` from the start: a
    // live copy that arrives after its message went out, while later pages are still being
    // sent, is neither queued nor counted again (see offer in delivery.ts).
    if (conn.queuedDuringReplay) conn.replayed = sent;
    let after: { id: string; createdAt: string } | undefined;
    let failures = 0;
    while (conn.isOpen) {
      let page: Envelope[];
      try {
        page = await this.page(conn.userId, after);
      } catch (err) {
        failures++;
        const retryInMs = Math.min(REPLAY_RETRY_MAX_MS, 1000 * 2 ** (failures - 1));
        this.o.log.warn(
          { err: (err as Error).message, userId: conn.userId, failures, retryInMs },
          'replay of unacked messages failed: will retry',
        );
        // Live messages must not wait on collect: what the retry resends, the client
        // drops as a duplicate.
        releaseQueued(conn, sent);
        await sleep(retryInMs);
        continue;
      }
      failures = 0;
      await this.pushPage(conn, page, sent);
      if (page.length < REPLAY_PAGE) break;
      const last = page[page.length - 1];
      after = last && { id: last.id, createdAt: last.createdAt };
      await this.bufferDrained(conn);
    }
    releaseQueued(conn, sent);
    if (sent.size === 0) return;
    conn.replayed = sent;
    setTimeout(() => {
      if (conn.replayed === sent) conn.replayed = undefined;
    }, REPLAY_DEDUPE_MS).unref();
  }

  /** The page after `after`, or the first page (asked with other connects' first pages). */
  private async page(
    userId: string,
    after: { id: string; createdAt: string } | undefined,
  ): Promise<Envelope[]> {
    if (after === undefined) {
      const first = await this.o.firstPages.ask(userId);
      if (first !== null) return first;
    }
    const res = await this.o.collect.call(unackedHop, {
      userId,
      limit: REPLAY_PAGE,
      ...(after === undefined ? {} : { after }),
    });
    return res.messages;
  }

  private async pushPage(
    conn: Connection,
    page: readonly Envelope[],
    sent: Set<string>,
  ): Promise<void> {
    /** Pushed, and counted by nobody else: a live copy queued behind this replay was
     *  already reported delivered by the forward hop that brought it. */
    const uncounted: string[] = [];
    for (const m of page) {
      if (sent.has(m.id)) continue;
      // A page of large messages must not overflow the socket's buffer: that would close it
      // as a slow consumer, and the next connect would replay the same page into the same
      // wall. So each push waits, if need be, for the socket to send what it holds.
      if (conn.socket.bufferedAmount > this.o.lowWaterBytes) await this.bufferDrained(conn);
      if (!conn.isOpen) break;
      if (conn.push(m.id, m.frame)) {
        sent.add(m.id);
        if (!conn.queuedDuringReplay?.has(m.id)) uncounted.push(m.id);
      }
    }
    if (uncounted.length > 0) this.o.delivered.add(uncounted);
  }

  /** Waits until the socket has sent most of what it holds, or closed. */
  private async bufferDrained(conn: Connection): Promise<void> {
    while (conn.isOpen && conn.socket.bufferedAmount > this.o.lowWaterBytes)
      await sleep(REPLAY_POLL_MS);
  }
}

/** Pushes the live frames queued during the replay, but those the replay already sent. */
function releaseQueued(conn: Connection, sent: ReadonlySet<string>): void {
  const queued = conn.queuedDuringReplay;
  if (!queued) return;
  conn.queuedDuringReplay = undefined;
  for (const [id, frame] of queued) if (!sent.has(id)) conn.push(id, frame);
}
