import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import { HANDOFF_MAX_BATCH, HANDOFF_RETRY_MS } from '../core/tuning.js';
import { handoffHop, type Envelope, type ResponseOf } from '../protocol/hops.js';
import type { AckRetry, MessageStore, StoredMessage } from '../store/message-store.js';

export function envelopeOf(m: StoredMessage): Envelope {
  return { id: m.id, to: m.to, payload: m.payload, createdAt: m.createdAt.toISOString() };
}

/**
 * Where a hand-off comes from. `ingest`: a message just stored; if its user has no route
 * it is looked at once more after `unroutedRecheckMs` (a node evicted for a moment gets
 * its routes back within a refresh, and its users must not wait for their next connect).
 * `sweep`: a message the redelivery sweeper found due.
 */
export type HandoffOrigin = 'ingest' | 'sweep';

interface Queued {
  envelope: Envelope;
  origin: HandoffOrigin;
}

export interface HandoffOptions {
  dispatch: Pick<Peers, 'call'>;
  store: MessageStore;
  log: Logger;
  /** When a delivered message is pushed again if not acked. */
  ackRetry: AckRetry;
  /** UNROUTED_RECHECK */
  unroutedRecheckMs: number;
}

/**
 * Hands stored messages to dispatch, batched per turn of the event loop, and records in
 * the store what became of each: delivered (its ack is now awaited), unrouted (it waits
 * for its user to connect) or not handed over (tried again shortly).
 */
export class Handoff {
  private batch: Queued[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly store: MessageStore;
  private readonly log: Logger;

  constructor(private readonly o: HandoffOptions) {
    this.store = o.store;
    this.log = o.log;
  }

  enqueue(messages: StoredMessage[], origin: HandoffOrigin): void {
    for (const m of messages) this.batch.push({ envelope: envelopeOf(m), origin });
    // Whatever arrives in the same turn of the event loop travels together: under load
    // that is a batch, and a lone message waits for nothing.
    if (this.batch.length >= HANDOFF_MAX_BATCH) this.flush();
    else this.scheduled ??= setImmediate(() => this.flush());
  }

  private flush(): void {
    clearImmediate(this.scheduled);
    this.scheduled = undefined;
    while (this.batch.length > 0) {
      const chunk = this.batch.splice(0, HANDOFF_MAX_BATCH);
      const p = this.send(chunk).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
  }

  private async send(chunk: Queued[]): Promise<void> {
    const now = Date.now();
    const ids = chunk.map((q) => q.envelope.id);
    let res: ResponseOf<typeof handoffHop>;
    try {
      res = await this.o.dispatch.call(handoffHop, { messages: chunk.map((q) => q.envelope) });
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, messages: chunk.length },
        'dispatch failed: will retry',
      );
      await this.record(() => this.store.retryAt(ids, new Date(now + HANDOFF_RETRY_MS)));
      return;
    }
    const delivered = new Set(res.delivered);
    const unrouted = new Set(res.unrouted);
    const recheck: string[] = [];
    const waitForConnect: string[] = [];
    for (const q of chunk) {
      if (unrouted.has(q.envelope.id))
        (q.origin === 'ingest' ? recheck : waitForConnect).push(q.envelope.id);
    }
    const failed = ids.filter((id) => !delivered.has(id) && !unrouted.has(id));
    await Promise.all([
      delivered.size > 0 &&
        this.record(() => this.store.markDelivered([...delivered], new Date(now), this.o.ackRetry)),
      recheck.length > 0 &&
        this.record(() => this.store.retryAt(recheck, new Date(now + this.o.unroutedRecheckMs))),
      waitForConnect.length > 0 && this.record(() => this.store.markUnrouted(waitForConnect)),
      failed.length > 0 &&
        this.record(() => this.store.retryAt(failed, new Date(now + HANDOFF_RETRY_MS))),
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
