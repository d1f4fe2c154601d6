import { Fifo } from '../core/fifo.js';

/**
 * Upgrades waiting for their turn. The 'upgrade' listener only queues a handshake; the queue
 * runs a few per turn of the event loop (setImmediate), so that between them the loop reads
 * what else arrived. Run in the listener, a reconnect storm's handshakes (a token check each)
 * ran back to back: both surviving nodes of the bench's storm answered their health check
 * more than a second late and left routing, so the users already on them got nothing live
 * meanwhile; with the queue, neither did.
 */
export class HandshakeQueue {
  private readonly waiting = new Fifo<() => void>();
  private scheduled = false;

  constructor(private readonly perTurn: number) {}

  get length(): number {
    return this.waiting.size;
  }

  push(task: () => void): void {
    this.waiting.push(task);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.runTurn());
    }
  }

  private runTurn(): void {
    for (let n = 0; n < this.perTurn; n++) this.waiting.shift()?.();
    if (this.waiting.size > 0) setImmediate(() => this.runTurn());
    else this.scheduled = false;
  }
}
