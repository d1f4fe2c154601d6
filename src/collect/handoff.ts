import type { Logger } from '../core/logger.js';
import { PeerError, type Peers } from '../core/peers.js';
import { sendSplitting, tooLarge } from '../core/send-splitting.js';
import { HANDOFF_MAX_BATCH, HANDOFF_RETRY_MS } from '../core/tuning.js';
import { messageFrameText } from '../protocol/frames.js';
import {
  handoffHop,
  serializedEnvelopes,
  type Envelope,
  type ResponseOf,
} from '../protocol/hops.js';
import type { MessageStore, StoredMessage } from '../store/message-store.js';

export function envelopeOf(m: StoredMessage): Envelope {
  const createdAt = m.createdAt.toISOString();
  const envelope: Envelope = {
    id: m.id,
    to: m.to,
    createdAt,
    frame: messageFrameText({
      id: m.id,
      payload: m.payload,
      payloadJson: m.payloadJson,
      createdAt,
    }),
  };
  if (m.status === 'delivered') envelope.redelivery = true;
  return envelope;
}

/**
 * Where a hand-off comes from. `ingest`: a message just stored; if its user has no route
 * it is looked at once more after `unroutedRecheckMs` (a node evicted for a moment gets
 * its routes back within a refresh, and its users must not wait for their next connect).
 * `sweep`: a message the redelivery sweeper found due.
 */
export type HandoffOrigin = 'ingest' | 'sweep';

interface Queued {
  id: string;
  origin: HandoffOrigin;
  /** The envelope as JSON, serialized once, and its size in bytes. */
  json: string;
  bytes: number;
}

export interface HandoffOptions {
  dispatch: Pick<Peers, 'call'>;
  store: MessageStore;
  log: Logger;
  /** These reached a socket at `at` (collect writes their marks a moment late, see
   *  DeliveredMarks). */
  onDelivered(ids: string[], at: number): void;
  /** UNROUTED_RECHECK */
  unroutedRecheckMs: number;
  /** Most bytes of envelopes in one hand-off: well under what dispatch (and, for each
   *  node's share, a push node) takes in one internal body. */
  maxBatchBytes: number;
  /** Most bytes of envelopes queued or in flight before messages just stored are left to
   *  the sweeper instead (they are due at HANDOFF_GRACE): a backlog must not grow without
   *  bound in memory while dispatch is slower than ingestion. */
  maxBacklogBytes: number;
  /** Messages just stored that were left to the sweeper, the backlog being full. */
  onDeferred?(count: number): void;
}

/**
 * Hands stored messages to dispatch, batched per turn of the event loop and bounded by
 * count and by bytes, and records what became of each: delivered (its ack is now awaited;
 * passed to `onDelivered`), replayed (a connect's replay pushed it, and marks it itself:
 * nothing to record), unrouted (it waits for its user to connect) or not handed over (tried
 * again shortly). A batch dispatch refuses as too large (413) is split in halves; a single
 * message too large for the hop by itself — which ingestion's limits prevent, unless the
 * settings changed since it was stored — fails with that reason instead of being retried
 * until it expires.
 */
export class Handoff {
  private batch: Queued[] = [];
  /** Bytes of envelopes queued or in flight, and who waits for them to fall. */
  private backlog = 0;
  private backlogWaiters: (() => void)[] = [];
  private scheduled: NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly store: MessageStore;
  private readonly log: Logger;

  constructor(private readonly o: HandoffOptions) {
    this.store = o.store;
    this.log = o.log;
  }

  enqueue(messages: StoredMessage[], origin: HandoffOrigin): void {
    if (origin === 'ingest' && this.backlog > this.o.maxBacklogBytes) {
      this.o.onDeferred?.(messages.length);
      return;
    }
    for (const m of messages) {
      const json = JSON.stringify(envelopeOf(m));
      const bytes = Buffer.byteLength(json);
      this.batch.push({ id: m.id, origin, json, bytes });
      this.backlog += bytes;
    }
    // Whatever arrives in the same turn of the event loop travels together: under load
    // that is a batch, and a lone message waits for nothing.
    if (this.batch.length >= HANDOFF_MAX_BATCH) this.flush();
    else this.scheduled ??= setImmediate(() => this.flush());
  }

  private flush(): void {
    clearImmediate(this.scheduled);
    this.scheduled = undefined;
    let start = 0;
    while (start < this.batch.length) {
      let end = start;
      let bytes = 0;
      while (
        end < this.batch.length &&
        end - start < HANDOFF_MAX_BATCH &&
        (end === start || bytes + (this.batch[end] as Queued).bytes <= this.o.maxBatchBytes)
      )
        bytes += (this.batch[end++] as Queued).bytes;
      const chunk = this.batch.slice(start, end);
      start = end;
      const p = this.sendChunk(chunk).finally(() => {
        this.inFlight.delete(p);
        this.backlog -= bytes;
        for (const wake of this.backlogWaiters.splice(0)) wake();
      });
      this.inFlight.add(p);
    }
    this.batch = [];
  }

  private sendChunk(chunk: readonly Queued[]): Promise<void> {
    return sendSplitting(chunk, (part) => this.send(part), {
      splitOn: tooLarge,
      onRefused: (q, err) => {
        this.log.error(
          { msgId: q.id, bytes: q.bytes, err: err.message },
          'message too large for the hand-off hop: failed',
        );
        return this.record(() =>
          this.store.markFailed([q.id], new Date(), 'too large for the hand-off hop'),
        );
      },
    });
  }

  /** One hand-off; a 413 is thrown for sendSplitting, anything else is recorded here. */
  private async send(chunk: readonly Queued[]): Promise<void> {
    const now = Date.now();
    const ids = chunk.map((q) => q.id);
    let res: ResponseOf<typeof handoffHop>;
    try {
      res = await this.o.dispatch.call(handoffHop, serializedEnvelopes(chunk.map((q) => q.json)));
    } catch (err) {
      if (err instanceof PeerError && tooLarge(err)) throw err;
      this.log.warn(
        { err: (err as Error).message, messages: chunk.length },
        'dispatch failed: will retry',
      );
      await this.record(() => this.store.retryAt(ids, new Date(now + HANDOFF_RETRY_MS)));
      return;
    }
    const delivered = new Set(res.delivered);
    const unrouted = new Set(res.unrouted);
    // Replayed: a replay pushed it and marks it itself; a second mark would count that push
    // twice (the backoff and MAX_ATTEMPTS rest on the count).
    const replayed = new Set(res.replayed);
    const recheck: string[] = [];
    const waitForConnect: string[] = [];
    for (const q of chunk) {
      if (unrouted.has(q.id)) (q.origin === 'ingest' ? recheck : waitForConnect).push(q.id);
    }
    const failed = ids.filter((id) => !delivered.has(id) && !unrouted.has(id) && !replayed.has(id));
    if (delivered.size > 0) this.o.onDelivered([...delivered], now);
    await Promise.all([
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

  /** Resolves once the bytes queued or in flight are at most `bytes`: the sweeper waits
   *  for it between two claims, so a backlog of any size is handed off a part at a time. */
  async backlogBelow(bytes: number): Promise<void> {
    while (this.backlog > bytes) await new Promise<void>((r) => this.backlogWaiters.push(r));
  }

  /** Sends what is queued and waits for every hand-off in flight. */
  async drain(): Promise<void> {
    this.flush();
    await Promise.allSettled([...this.inFlight]);
  }
}
