import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { handoffHop, type Envelope, type ResponseOf } from '../protocol/hops.js';
import type { MessageStore, StoredMessage } from '../store/message-store.js';

const MAX_BATCH = 1000;
/** How soon a message dispatch could not hand to its node is tried again. */
const RETRY_FAILED_MS = 1000;

export function envelopeOf(m: StoredMessage): Envelope {
  return { id: m.id, to: m.to, payload: m.payload, createdAt: m.createdAt.toISOString() };
}

interface Queued {
  envelope: Envelope;
  /** First hand-off of a fresh message: if unrouted, look once more later (see enqueue). */
  fresh: boolean;
}

/**
 * Hands stored messages to dispatch, batched per turn of the event loop, and records in
 * the store what became of each: delivered (its ack is now awaited), unrouted (it waits
 * for its user to connect) or not handed over (tried again shortly).
 */
export class DispatchHandoff {
  private batch: Queued[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly dispatch: Peers,
    private readonly store: MessageStore,
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  /**
   * `fresh` messages come straight from ingestion. If their user has no route, they are
   * looked at once more after UNROUTED_RECHECK: a node evicted for a moment gets its
   * routes back within a refresh, and its users must not wait for their next connect.
   */
  enqueue(messages: StoredMessage[], fresh: boolean): void {
    for (const m of messages) this.batch.push({ envelope: envelopeOf(m), fresh });
    // Whatever arrives in the same turn of the event loop travels together: under load
    // that is a batch, and a lone message waits for nothing.
    if (this.batch.length >= MAX_BATCH) this.flush();
    else this.scheduled ??= setImmediate(() => this.flush());
  }

  private flush(): void {
    clearImmediate(this.scheduled);
    this.scheduled = undefined;
    while (this.batch.length > 0) {
      const chunk = this.batch.splice(0, MAX_BATCH);
      const p = this.send(chunk).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  private async send(chunk: Queued[]): Promise<void> {
    const now = Date.now();
    const ids = chunk.map((q) => q.envelope.id);
    let res: ResponseOf<typeof handoffHop>;
    try {
      res = await this.dispatch.call(handoffHop, { messages: chunk.map((q) => q.envelope) });
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, messages: chunk.length },
        'dispatch failed: will retry',
      );
      await this.record(() => this.store.retryAt(ids, new Date(now + RETRY_FAILED_MS)));
      return;
    }
    const delivered = new Set(res.delivered);
    const unrouted = new Set(res.unrouted);
    const recheck: string[] = [];
    const waitForConnect: string[] = [];
    for (const q of chunk) {
      if (unrouted.has(q.envelope.id)) (q.fresh ? recheck : waitForConnect).push(q.envelope.id);
    }
    const failed = ids.filter((id) => !delivered.has(id) && !unrouted.has(id));
    const retry = { baseMs: this.config.ACK_TIMEOUT, maxMs: this.config.ACK_RETRY_MAX };
    await Promise.all([
      delivered.size > 0 &&
        this.record(() => this.store.markDelivered([...delivered], new Date(now), retry)),
      recheck.length > 0 &&
        this.record(() =>
          this.store.retryAt(recheck, new Date(now + this.config.UNROUTED_RECHECK)),
        ),
      waitForConnect.length > 0 && this.record(() => this.store.markUnrouted(waitForConnect)),
      failed.length > 0 &&
        this.record(() => this.store.retryAt(failed, new Date(now + RETRY_FAILED_MS))),
    ]);
  }

  /** A status write that fails leaves the message due (nextAttemptAt was set at insert
   *  or by the sweeper's lease): the worst outcome is a redelivery. */
  private async record(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not record a delivery outcome');
    }
  }

  /** Sends what is queued and waits for every hand-off in flight. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }
}
