/**
 * A first-in first-out queue whose front is taken in O(1), however long it grows (an
 * array's shift() copies the rest): the space of what was taken is given back once it is
 * most of the array.
 */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item, still queued. */
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** Takes the oldest item out. */
  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head] as T;
    this.items[this.head++] = undefined as T; // let it be collected
    this.compact();
    return item;
  }

  /** Takes the n oldest items out. */
  drop(n: number): void {
    this.head = Math.min(this.items.length, this.head + Math.max(0, n));
    this.compact();
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
