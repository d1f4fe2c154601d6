// The ids a client has processed, to drop the redelivered copies that at-least-once
// delivery brings. Imports nothing: browsers load it as is.

/**
 * The last `size` ids processed, each with whether it was acked (a redelivery of an acked
 * one is acked again: its ack may have been lost with a socket). A ring plus a Map rather
 * than lru-cache, which browsers could not load without a bundler: the ring holds the ids
 * in the order they came, so the oldest is forgotten first.
 */
export class DedupeWindow {
  private readonly acked = new Map<string, boolean>();
  private readonly ring: (string | undefined)[];
  private next = 0;

  constructor(size: number) {
    this.ring = new Array<string | undefined>(size);
  }

  /** undefined for an id not processed (or forgotten), else whether it was acked. */
  get(id: string): boolean | undefined {
    return this.acked.get(id);
  }

  remember(id: string, acked: boolean): void {
    const forgotten = this.ring[this.next];
    if (forgotten !== undefined) this.acked.delete(forgotten);
    this.ring[this.next] = id;
    this.next = (this.next + 1) % this.ring.length;
    this.acked.set(id, acked);
  }

  /** Records that a processed id was acked; false (and nothing done) for an id it does
   *  not hold. */
  markAcked(id: string): boolean {
    if (!this.acked.has(id)) return false;
    this.acked.set(id, true);
    return true;
  }
}
