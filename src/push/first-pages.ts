import { PeerError, type Peers } from '../core/peers.js';
import { CONNECT_BATCH_MS } from '../core/tuning.js';
import {
  MAX_USERS_PER_FIRST_PAGES,
  unackedFirstPagesHop,
  type Envelope,
} from '../protocol/hops.js';

export interface FirstPagesOptions {
  /** collect's instances (only `call` is used). */
  collect: Pick<Peers, 'call'>;
  /** Messages per page. */
  limit: number;
}

interface Waiter {
  userId: string;
  resolve(page: Envelope[] | null): void;
  reject(err: unknown): void;
}

/** Requests of first pages a node has in flight at most: connects meanwhile wait for the
 *  next, which then takes all of them. */
const IN_FLIGHT = 2;

/**
 * The first replay page of every user who connects, asked of collect for many connects at
 * once (`unackedFirstPagesHop`): under a reconnect storm a request per socket cost collect
 * and the node more than the connect itself, and most pages are empty. A request takes the
 * connects of CONNECT_BATCH_MS, or, while IN_FLIGHT requests are out, all those that
 * came meanwhile (a storm of 15,000 users made 1.25 users per request with the first rule
 * alone). A user the answer had no room for gets null, and is asked for alone.
 */
export class FirstPages {
  private waiting: Waiter[] = [];
  private scheduled = false;
  private inFlight = 0;

  constructor(private readonly o: FirstPagesOptions) {}

  /** The user's first page, null to ask alone; rejects when collect could not answer. */
  ask(userId: string): Promise<Envelope[] | null> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ userId, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setTimeout(() => this.flush(), CONNECT_BATCH_MS);
    });
  }

  private flush(): void {
    this.scheduled = false;
    while (this.waiting.length > 0 && this.inFlight < IN_FLIGHT)
      void this.send(this.waiting.splice(0, MAX_USERS_PER_FIRST_PAGES));
  }

  private async send(batch: Waiter[]): Promise<void> {
    this.inFlight++;
    try {
      const { pages } = await this.o.collect.call(unackedFirstPagesHop, {
        userIds: batch.map((w) => w.userId),
        limit: this.o.limit,
      });
      batch.forEach((w, i) => w.resolve(pages[i] ?? null));
    } catch (err) {
      // A collect of an older build has no first-pages hop: each is asked for alone.
      const unknownHop = err instanceof PeerError && err.status === 404;
      for (const w of batch) {
        if (unknownHop) w.resolve(null);
        else w.reject(err);
      }
    } finally {
      this.inFlight--;
      this.flush();
    }
  }
}
