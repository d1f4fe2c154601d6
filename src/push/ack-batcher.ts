import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { ACK_FLUSH_MS, ACK_RETRY_MS, MAX_WAITING_ACKS } from '../core/tuning.js';
import { acksHop } from '../protocol/hops.js';

/**
 * Gathers clients' acks for a few milliseconds (ACK_FLUSH_MS) and passes them to collect
 * in one call (`acksHop`), so a busy node makes one request per batch, not one per ack.
 * Acks collect could not take wait for the next try, ACK_RETRY_MS later (up to
 * MAX_WAITING_ACKS): a lost ack only means the message is pushed again.
 */
export class AckBatcher {
  private byUser = new Map<string, string[]>();
  /** Acks waiting to be passed to collect. */
  private waiting = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly collect: Pick<Peers, 'call'>,
    private readonly log: Logger,
  ) {}

  add(userId: string, id: string): void {
    if (this.waiting >= MAX_WAITING_ACKS) return;
    const ids = this.byUser.get(userId);
    if (ids) ids.push(id);
    else this.byUser.set(userId, [id]);
    this.waiting++;
    this.timer ??= setTimeout(() => void this.flush(), ACK_FLUSH_MS);
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waiting === 0) return;
    const batch = [...this.byUser].map(([userId, ids]) => ({ userId, ids }));
    this.byUser = new Map();
    this.waiting = 0;
    try {
      await this.collect.call(acksHop, { acks: batch });
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, users: batch.length },
        'could not pass acks to collect: will retry',
      );
      this.timer = setTimeout(() => void this.flush(), ACK_RETRY_MS);
      for (const { userId, ids } of batch) for (const id of ids) this.add(userId, id);
    }
  }
}
