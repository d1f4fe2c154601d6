import type { Config } from '../core/config.js';
import type { LeaderLock } from '../core/leader.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import type { MessageStore, StoredMessage } from '../store/message-store.js';
import type { DispatchHandoff } from './dispatch-handoff.js';

const BATCH = 1000;
/** A claimed message is due again after this long if the sweeper dies mid-way. */
const LEASE_MS = 10_000;

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

  constructor(
    private readonly store: MessageStore,
    private readonly handoff: DispatchHandoff,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** Starts sweeping whenever `lock` is held; the sweeper takes and releases it. */
  start(lock: LeaderLock): void {
    this.lock = lock;
    lock.start();
    this.timer = setInterval(() => {
      this.running ??= this.sweep().finally(() => (this.running = undefined));
    }, this.config.SWEEP_INTERVAL);
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
        const due = await this.store.claimDue(now, BATCH, LEASE_MS);
        if (due.length === 0) return;
        const spent = (m: StoredMessage): boolean =>
          m.status === 'delivered' && m.attempts >= this.config.MAX_ATTEMPTS;
        const exhausted = due.filter(spent);
        const again = due.filter((m) => !spent(m));
        if (exhausted.length > 0) {
          await this.store.markFailed(
            exhausted.map((m) => m.id),
            now,
            `not acked after ${this.config.MAX_ATTEMPTS} deliveries`,
          );
          this.metrics.stage('failed').inc(exhausted.length);
          this.log.warn(
            { msgIds: exhausted.slice(0, 20).map((m) => m.id), messages: exhausted.length },
            'messages failed: never acked',
          );
        }
        if (again.length > 0) {
          const redelivered = again.filter((m) => m.status === 'delivered').length;
          this.metrics.stage('redelivered').inc(redelivered);
          this.handoff.enqueue(again, false);
        }
        if (due.length < BATCH) return;
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'redelivery sweep failed: will retry');
    }
  }
}
