/**
 * Upgrades waiting for their turn. The 'upgrade' listener only queues a handshake; the queue
 * runs a few per turn of the event loop (setImmediate), so that between them the loop reads
 * what else arrived. Run in the listener, a reconnect storm's handshakes (a token check each)
 * ran back to back: both surviving nodes of the bench's storm answered their health check
 * more than a second late and left routing, so the users already on them got nothing live
 * meanwhile; with the queue, neither did.
 */
export class HandshakeQueue {
  private readonly waiting: (() => void)[] = [];
  /** Index of the next task in `waiting` (a queue with an O(1) front). */
  private next = 0;
  private scheduled = false;

  constructor(private readonly perTurn: number) {}

  get length(): number {
    return this.waiting.length - this.next;
  }

  push(task: () => void): void {
    this.waiting.push(task);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.runTurn());
    }
  }

  private runTurn(): void {
    const end = Math.min(this.next + this.perTurn, this.waiting.length);
    while (this.next < end) {
      const task = this.waiting[this.next] as () => void;
      this.waiting[this.next++] = noop; // let it be collected
      task();
    }
    if (this.next === this.waiting.length) {
      this.waiting.length = 0;
      this.next = 0;
      this.scheduled = false;
    } else setImmediate(() => this.runTurn());
  }
}

const noop = (): void => undefined;
