import type { Peers } from '../core/peers.js';
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

/**
 * The first replay page of every user who connects, asked of collect for all the connects
 * of one event-loop turn at once (`unackedFirstPagesHop`): under a reconnect storm a request
 * per socket cost collect and the node more than the connect itself, and most pages are
 * empty. A user the answer had no room for gets null, and is asked for alone.
 */
export class FirstPages {
  private waiting: Waiter[] = [];
  private scheduled = false;

  constructor(private readonly o: FirstPagesOptions) {}

  /** The user's first page, null to ask alone; rejects when collect could not answer. */
  ask(userId: string): Promise<Envelope[] | null> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ userId, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = this.waiting;
    this.waiting = [];
    for (let i = 0; i < all.length; i += MAX_USERS_PER_FIRST_PAGES)
      void this.send(all.slice(i, i + MAX_USERS_PER_FIRST_PAGES));
  }

  private async send(batch: Waiter[]): Promise<void> {
    try {
      const { pages } = await this.o.collect.call(unackedFirstPagesHop, {
        userIds: batch.map((w) => w.userId),
        limit: this.o.limit,
      });
      batch.forEach((w, i) => w.resolve(pages[i] ?? null));
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }
}
