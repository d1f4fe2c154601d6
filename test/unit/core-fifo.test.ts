import { describe, expect, it } from 'vitest';
import { Fifo } from '../../src/core/fifo.js';

describe('Fifo', () => {
  it('gives items back oldest first, through many compactions', () => {
    const q = new Fifo<number>();
    const out: number[] = [];
    for (let i = 0; i < 5000; i++) {
      q.push(i);
      if (i % 3 === 2) out.push(q.shift() as number, q.shift() as number);
    }
    q.drop(10);
    while (q.size > 0) out.push(q.shift() as number);
    const expected = Array.from({ length: 5000 }, (_, i) => i);
    // 3,332 taken one by one, then 10 dropped, then the rest.
    expect(out).toEqual([...expected.slice(0, 3332), ...expected.slice(3342)]);
    expect(q.peek()).toBeUndefined();
    expect(q.shift()).toBeUndefined();
    q.drop(-3);
    q.push(7);
    expect([q.size, q.peek()]).toEqual([1, 7]);
  });
});
