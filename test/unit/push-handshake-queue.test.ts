import { describe, expect, it } from 'vitest';
import { HandshakeQueue } from '../../src/push/handshake-queue.js';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('HandshakeQueue', () => {
  it('runs its handshakes in order, a few per turn, letting other work in between', async () => {
    const queue = new HandshakeQueue(2);
    const ran: string[] = [];
    for (const name of ['a', 'b', 'c', 'd', 'e']) queue.push(() => ran.push(name));
    expect(ran).toEqual([]); // queued, not run in the caller's turn
    expect(queue.length).toBe(5);
    // Work queued after them (a health check's read, say) runs before the last ones.
    setImmediate(() => ran.push('other'));
    await turn();
    await turn();
    await turn();
    await turn();
    expect(ran.slice(0, 2)).toEqual(['a', 'b']);
    expect(ran.indexOf('other')).toBeLessThan(ran.indexOf('e'));
    expect(ran.filter((r) => r !== 'other')).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(queue.length).toBe(0);
  });

  it('starts again when handshakes come after it emptied', async () => {
    const queue = new HandshakeQueue(16);
    const ran: number[] = [];
    queue.push(() => ran.push(1));
    await turn();
    await turn();
    queue.push(() => ran.push(2));
    await turn();
    await turn();
    expect(ran).toEqual([1, 2]);
  });
});
