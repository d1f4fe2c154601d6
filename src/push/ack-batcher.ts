import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { sendSplitting } from '../core/send-splitting.js';
import { ACK_FLUSH_MS, ACK_RETRY_MS, MAX_WAITING_ACKS } from '../core/tuning.js';
import { acksHop } from '../protocol/hops.js';

export interface AckBatcherOptions {
  collect: Pick<Peers, 'call'>;
  log: Logger;
  /** Acks collect refused for good (stage `ack_refused`). */
  onRefused(count: number): void;
}

interface Ack {
  userId: string;
  id: string;
}

/**
 * Gathers clients' acks for a few milliseconds (ACK_FLUSH_MS) and passes them to collect
 * in one call (`acksHop`), so a busy node makes one request per batch, not one per ack.
 * Acks collect could not take wait for the next try, ACK_RETRY_MS later (up to
 * MAX_WAITING_ACKS): a lost ack only means the message is pushed again. A batch collect
 * refuses for good (400, 413) is split until the refused acks stand alone: those are
 * dropped, logged and counted, and never hold up the others.
 */
export class AckBatcher {
  private waitingAcks: Ack[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: AckBatcherOptions) {}

  /** Acks waiting to be passed to collect. */
  get waiting(): number {
    return this.waitingAcks.length;
  }

  add(userId: string, id: string): void {
    if (this.waitingAcks.length >= MAX_WAITING_ACKS) return;
    this.waitingAcks.push({ userId, id });
    this.timer ??= setTimeout(() => void this.flush(), ACK_FLUSH_MS);
  }

  async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.waitingAcks.length === 0) return;
    const batch = this.waitingAcks;
    this.waitingAcks = [];
    try {
      await sendSplitting(batch, (part) => this.send(part), {
        splitOn: (err) => err.status === 400 || err.status === 413,
        onRefused: (ack, err) => {
          this.o.log.warn(
            { userId: ack.userId, msgId: ack.id, err: err.message },
            'collect refused an ack for good: dropped (the message will be pushed again)',
          );
          this.o.onRefused(1);
        },
      });
    } catch (err) {
      this.o.log.warn(
        { err: (err as Error).message, acks: batch.length },
        'could not pass acks to collect: will retry',
      );
      // What the split already passed is acked twice at worst: collect ignores that.
      for (const ack of batch) this.add(ack.userId, ack.id);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.flush(), ACK_RETRY_MS);
    }
  }

  private async send(acks: readonly Ack[]): Promise<void> {
    const byUser = new Map<string, string[]>();
    for (const { userId, id } of acks) {
      const ids = byUser.get(userId);
      if (ids) ids.push(id);
      else byUser.set(userId, [id]);
    }
    await this.o.collect.call(acksHop, {
      acks: [...byUser].map(([userId, ids]) => ({ userId, ids })),
    });
  }
}
