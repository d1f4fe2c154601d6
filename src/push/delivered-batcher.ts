import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { deliveredHop, MAX_IDS_PER_REQUEST } from '../protocol/hops.js';

export interface DeliveredBatcherOptions {
  collect: Pick<Peers, 'call'>;
  log: Logger;
}

/**
 * Passes the ids the replays pushed to collect (`deliveredHop`) many at a time: those of
 * one event-loop turn, or, while a request is out, all that come meanwhile. A replay of one
 * message per user made a request per user: 15,462 of them in a storm of 15,000 users,
 * most of collect's work there. A request that fails is only logged: its messages stay due,
 * and the redelivery sweeper pushes them again, which is safe.
 */
export class DeliveredBatcher {
  private ids: string[] = [];
  private scheduled = false;
  private sending = false;

  constructor(private readonly o: DeliveredBatcherOptions) {}

  add(ids: readonly string[]): void {
    for (const id of ids) this.ids.push(id);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.sending || this.ids.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.send();
    });
  }

  private async send(): Promise<void> {
    const batch = this.ids.splice(0, MAX_IDS_PER_REQUEST);
    this.sending = true;
    try {
      await this.o.collect.call(deliveredHop, { ids: batch });
    } catch (err) {
      this.o.log.warn(
        { err: (err as Error).message, ids: batch.length },
        'could not mark replayed messages delivered: they stay due',
      );
    } finally {
      this.sending = false;
      this.schedule();
    }
  }
}
