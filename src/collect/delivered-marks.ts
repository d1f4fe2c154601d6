import type { Logger } from '../core/logger.js';
import type { AckRetry, MessageStore } from '../store/message-store.js';

interface Batch {
  /** When its messages reached a socket (epoch ms): the mark's `deliveredAt`. */
  at: number;
  ids: Set<string>;
}

export interface DeliveredMarksOptions {
  store: Pick<MessageStore, 'markDelivered'>;
  log: Logger;
  /** When a delivered message is pushed again if not acked. */
  ackRetry: AckRetry;
  /** How long a mark waits for the message's ack before it is written. */
  delayMs: number;
}

/**
 * The `delivered` marks, written a moment late. Most messages are acked within that
 * moment, and an ack makes their mark moot (an ack moves a message to `acked` from any
 * open status), so under load one store write per message is saved. Nothing rests on a
 * mark that is late or lost in a crash: until it is written the message stays due at the
 * time its hand-off set (HANDOFF_GRACE after ingestion, or the sweeper's lease), so the
 * worst outcome is a redelivery, which clients drop as a duplicate.
 */
export class DeliveredMarks {
  private readonly batches: Batch[] = [];
  /** The batches each message waits in: two when it was pushed twice (each push counts). */
  private readonly pending = new Map<string, Batch[]>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: DeliveredMarksOptions) {}

  /** These messages reached a socket at `at`. */
  add(ids: Iterable<string>, at: number): void {
    const batch: Batch = { at, ids: new Set() };
    for (const id of ids) {
      if (batch.ids.has(id)) continue;
      batch.ids.add(id);
      const waiting = this.pending.get(id);
      if (waiting) waiting.push(batch);
      else this.pending.set(id, [batch]);
    }
    if (batch.ids.size === 0) return;
    this.batches.push(batch);
    this.schedule();
  }

  /** These messages were acked: their marks are not needed any more. */
  acked(ids: Iterable<string>): void {
    for (const id of ids) {
      for (const batch of this.pending.get(id) ?? []) batch.ids.delete(id);
      this.pending.delete(id);
    }
  }

  /** How many marks wait to be written. */
  get size(): number {
    return this.pending.size;
  }

  /** Writes every mark now (on drain). */
  flush(): Promise<void> {
    return this.write(Infinity);
  }

  private schedule(): void {
    const first = this.batches[0];
    if (this.timer || !first) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        void this.write(Date.now() - this.o.delayMs).finally(() => this.schedule());
      },
      Math.max(0, first.at + this.o.delayMs - Date.now()),
    );
  }

  /** Writes the marks of the batches delivered at or before `until`. */
  private async write(until: number): Promise<void> {
    const writes: Promise<void>[] = [];
    while (this.batches.length > 0 && (this.batches[0] as Batch).at <= until) {
      const batch = this.batches.shift() as Batch;
      if (batch.ids.size === 0) continue;
      const ids = [...batch.ids];
      for (const id of ids) {
        const waiting = this.pending.get(id);
        if (waiting && waiting.length > 1) waiting.splice(waiting.indexOf(batch), 1);
        else this.pending.delete(id);
      }
      writes.push(
        this.o.store
          .markDelivered(ids, new Date(batch.at), this.o.ackRetry)
          .catch((err: unknown) =>
            this.o.log.warn(
              { err: (err as Error).message, messages: ids.length },
              'could not record a delivery outcome',
            ),
          ),
      );
    }
    await Promise.all(writes);
  }

  /** Stops the timer; call `flush` first to keep the marks. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
