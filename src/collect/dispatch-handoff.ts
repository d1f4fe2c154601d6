import type { Logger } from '../core/logger.js';
import type { Peers } from '../core/peers.js';
import type { DeliverResponse, Envelope } from '../core/protocol.js';
import type { MessageStore, StoredMessage } from '../store/message-store.js';

const MAX_BATCH = 1000;

export function envelopeOf(m: StoredMessage): Envelope {
  return { id: m.id, to: m.to, payload: m.payload, createdAt: m.createdAt.toISOString() };
}

/**
 * Hands stored messages to dispatch, batched per turn of the event loop, and marks
 * in the store the ones dispatch reports delivered. A message dispatch cannot take
 * stays pending in the store: it reaches its user on their next connect.
 */
export class DispatchHandoff {
  private batch: Envelope[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly dispatch: Peers,
    private readonly store: MessageStore,
    private readonly log: Logger,
  ) {}

  enqueue(messages: StoredMessage[]): void {
    for (const m of messages) this.batch.push(envelopeOf(m));
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

  private async send(messages: Envelope[]): Promise<void> {
    try {
      const res = await this.dispatch.call<DeliverResponse>('POST', '/internal/dispatch', {
        messages,
      });
      if (res.delivered.length > 0) await this.store.markDelivered(res.delivered, new Date());
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, messages: messages.length },
        'dispatch failed: messages stay pending',
      );
    }
  }

  /** Sends what is queued and waits for every hand-off in flight. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }
}
