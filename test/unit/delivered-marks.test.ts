import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { DeliveredMarks } from '../../src/collect/delivered-marks.js';
import type { AckRetry } from '../../src/store/message-store.js';
import { testLog } from '../support/silent-log.js';

const RETRY: AckRetry = { baseMs: 10_000, maxMs: 60_000 };

/** DeliveredMarks over a store that records each markDelivered call. */
function setup(delayMs: number) {
  const written: { ids: string[]; at: number }[] = [];
  const marks = new DeliveredMarks({
    store: {
      markDelivered: async (ids, at) => void written.push({ ids, at: at.getTime() }),
    },
    log: testLog('collect'),
    ackRetry: RETRY,
    delayMs,
  });
  all.push(marks);
  return { marks, written };
}
const all: DeliveredMarks[] = [];
afterEach(() => {
  for (const m of all.splice(0)) m.stop();
});

describe('DeliveredMarks', () => {
  it('writes the marks of messages not acked once the delay ran out, with their delivery time', async () => {
    const { marks, written } = setup(50);
    marks.add(['a', 'b'], 1000);
    expect(written).toEqual([]);
    await waitFor('the marks written', () => written.length === 1, 2000, 5);
    expect(written).toEqual([{ ids: ['a', 'b'], at: 1000 }]);
    expect(marks.size).toBe(0);
  });

  it('never writes the mark of a message acked before the delay ran out', async () => {
    const { marks, written } = setup(50);
    const now = Date.now();
    marks.add(['a', 'b', 'c'], now);
    marks.acked(['b']);
    marks.add(['d'], now);
    marks.acked(['d']);
    await waitFor('the marks written', () => written.length > 0, 2000, 5);
    await new Promise((r) => setTimeout(r, 100));
    expect(written).toEqual([{ ids: ['a', 'c'], at: now }]);
  });

  it('writes one mark per push: a message pushed twice counts two attempts until acked', async () => {
    const { marks, written } = setup(10_000);
    marks.add(['a'], 1);
    marks.add(['a', 'b'], 2);
    expect(marks.size).toBe(2);
    await marks.flush();
    expect(written).toEqual([
      { ids: ['a'], at: 1 },
      { ids: ['a', 'b'], at: 2 },
    ]);
    marks.add(['c'], 3);
    marks.add(['c'], 4);
    marks.acked(['c']);
    await marks.flush();
    expect(written).toHaveLength(2);
  });

  it('writes everything at once on flush (a drain), whatever the delay', async () => {
    const { marks, written } = setup(60_000);
    marks.add(['a'], Date.now());
    await marks.flush();
    expect(written.map((w) => w.ids)).toEqual([['a']]);
  });
});
