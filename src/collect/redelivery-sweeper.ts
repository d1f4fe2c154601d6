import type { LeaderLock } from '../core/leader.js';
import type { Logger } from '../core/logger.js';
import { SWEEP_LEASE_MS } from '../core/tuning.js';
import type { MessageStore, StoredMessage } from '../store/message-store.js';
import type { Handoff } from './handoff.js';

export interface SweeperOptions {
  store: MessageStore;
  handoff: Pick<Handoff, 'enqueue' | 'backlogBelow'>;
  /** Due messages claimed at once (sweepBatch of MAX_PAYLOAD_BYTES). */
  batchSize: number;
  /** Bytes of hand-offs left queued or in flight before the next claim (one batch's). */
  backlogBytes: number;
  log: Logger;
  /** SWEEP_INTERVAL */
  intervalMs: number;
  /** MAX_ATTEMPTS: pushes without an ack before a message fails. */
  maxAttempts: number;
  /** Counts messages as they fail or are pushed again (metrics). */
  onFailed(count: number): void;
  onRedelivered(count: number): void;
}

/**
 * Finds messages that are due — a delivery whose ack is overdue, a hand-off that failed
 * or may have been lost with a crashed collect — and hands them to dispatch again.
 * A message pushed MAX_ATTEMPTS times without an ack is marked failed. One collect
 * instance sweeps at a time (the lock); the others stand by.
 */
export class RedeliverySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private lock: LeaderLock | undefined;

  private readonly store: MessageStore;
  private readonly log: Logger;

  constructor(private readonly o: SweeperOptions) {
    this.store = o.store;
    this.log = o.log;
  }

  /** Starts sweeping whenever `lock` is held; the sweeper takes and releases it. */
  start(lock: LeaderLock): void {
    this.lock = lock;
    lock.start();
    this.timer = setInterval(() => {
      this.running ??= this.sweep().finally(() => (this.running = undefined));
    }, this.o.intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
    await this.lock?.stop();
  }

  async sweep(): Promise<void> {
    if (!this.lock?.isLeader) return;
    try {
      for (;;) {
        const now = new Date();
        const due = await this.store.claimDue(now, this.o.batchSize, SWEEP_LEASE_MS);
        if (due.length === 0) return;
        const spent = (m: StoredMessage): boolean =>
          m.status === 'delivered' && m.attempts >= this.o.maxAttempts;
        const exhausted = due.filter(spent);
        const again = due.filter((m) => !spent(m));
        if (exhausted.length > 0) {
          await this.store.markFailed(
            exhausted.map((m) => m.id),
            now,
            `not acked after ${this.o.maxAttempts} deliveries`,
          );
          this.o.onFailed(exhausted.length);
          this.log.warn(
            { msgIds: exhausted.slice(0, 20).map((m) => m.id), messages: exhausted.length },
            'messages failed: never acked',
          );
        }
        if (again.length > 0) {
          this.o.onRedelivered(again.filter((m) => m.status === 'delivered').length);
          this.o.handoff.enqueue(again, 'sweep');
          // Claimed all at once, 25,631 due messages of 60 KB (1.5 GB) were held in memory
          // together and ran collect out of heap at every start: a crash loop. One batch
          // is handed off before the next is claimed.
          await this.o.handoff.backlogBelow(this.o.backlogBytes);
        }
        if (due.length < this.o.batchSize) return;
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'redelivery sweep failed: will retry');
    }
  }
}
