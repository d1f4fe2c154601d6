import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { acksHop } from '../protocol/hops.js';

const FLUSH_MS = 10;
const RETRY_MS = 1000;
const MAX_HELD = 100_000;

/**
 * Gathers clients' acks for a few milliseconds and hands them to collect in one call,
 * so a busy node makes one request per batch, not one per ack. Acks collect could not
 * take are kept for the next flush (up to MAX_HELD): a lost ack only means a redelivery.
 */
export class AckBatcher {
  private byUser = new Map<string, string[]>();
  private held = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly collect: Peers,
    private readonly log: Logger,
  ) {}

  add(userId: string, id: string): void {
    if (this.held >= MAX_HELD) return;
    const ids = this.byUser.get(userId);
    if (ids) ids.push(id);
    else this.byUser.set(userId, [id]);
    this.held++;
    this.timer ??= setTimeout(() => void this.flush(), FLUSH_MS);
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.held === 0) return;
    const batch = [...this.byUser].map(([userId, ids]) => ({ userId, ids }));
    this.byUser = new Map();
    this.held = 0;
    try {
      await this.collect.call(acksHop, { acks: batch });
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, users: batch.length },
        'could not pass acks to collect: will retry',
      );
      this.timer = setTimeout(() => void this.flush(), RETRY_MS);
      for (const { userId, ids } of batch) for (const id of ids) this.add(userId, id);
    }
  }
}
