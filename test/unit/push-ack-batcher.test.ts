import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PeerError, PeerUnavailable } from '../../src/core/peers.js';
import { ACK_FLUSH_MS, ACK_RETRY_MS, MAX_WAITING_ACKS } from '../../src/core/tuning.js';
import { acksHop } from '../../src/protocol/hops.js';
import { AckBatcher } from '../../src/push/ack-batcher.js';
import { testLog } from '../support/silent-log.js';
import { FakePeers } from './push-fakes.js';

type AcksBody = { acks: { userId: string; ids: string[] }[] };

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

/** collect, reachable or not as `reachable()` says, refusing with 400 any batch that
 *  holds an id in `refuse`. */
function setup(reachable: () => boolean = () => true, refuse: string[] = []) {
  const collect = new FakePeers((_path, body) => {
    if (!reachable()) throw new PeerUnavailable('collect unreachable');
    const ids = (body as AcksBody).acks.flatMap((a) => a.ids);
    if (ids.some((id) => refuse.includes(id))) throw new PeerError(400, 'invalid_request');
    return { acked: ids.length };
  });
  const batches = () => collect.callsTo(acksHop.path) as AcksBody[];
  let refused = 0;
  const acks = new AckBatcher({
    collect,
    log: testLog('push'),
    onRefused: (n) => (refused += n),
  });
  return { acks, batches, refused: () => refused };
}

describe('AckBatcher', () => {
  it('passes the acks of a few milliseconds to collect in one call, grouped per user', async () => {
    const { acks, batches } = setup();
    acks.add('alice', 'a1');
    acks.add('bob', 'b1');
    acks.add('alice', 'a2');
    expect(batches()).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(ACK_FLUSH_MS);
    expect(batches()).toEqual([
      {
        acks: [
          { userId: 'alice', ids: ['a1', 'a2'] },
          { userId: 'bob', ids: ['b1'] },
        ],
      },
    ]);
    acks.add('alice', 'a3');
    await vi.advanceTimersByTimeAsync(ACK_FLUSH_MS);
    expect(batches()[1]).toEqual({ acks: [{ userId: 'alice', ids: ['a3'] }] });
  });

  it('tries again later when collect is unreachable, with the acks added meanwhile', async () => {
    let up = false;
    const { acks, batches } = setup(() => up);
    acks.add('alice', 'a1');
    await vi.advanceTimersByTimeAsync(ACK_FLUSH_MS);
    expect(batches()).toHaveLength(1);
    acks.add('alice', 'a2');
    await vi.advanceTimersByTimeAsync(ACK_RETRY_MS / 2);
    expect(batches()).toHaveLength(1);
    up = true;
    await vi.advanceTimersByTimeAsync(ACK_RETRY_MS / 2);
    expect(batches()).toHaveLength(2);
    expect(batches()[1]).toEqual({ acks: [{ userId: 'alice', ids: ['a1', 'a2'] }] });
    await vi.advanceTimersByTimeAsync(ACK_RETRY_MS * 5);
    expect(batches()).toHaveLength(2);
  });

  it(`keeps at most ${MAX_WAITING_ACKS} acks waiting`, async () => {
    const { acks, batches } = setup(() => false);
    for (let i = 0; i < MAX_WAITING_ACKS + 10; i++) acks.add('alice', `m${i}`);
    await acks.flush();
    // Collect is down: they all wait again, and newer acks beyond the bound are dropped.
    acks.add('alice', 'late');
    await acks.flush();
    const [first, second] = batches();
    expect(first?.acks[0]?.ids).toHaveLength(MAX_WAITING_ACKS);
    expect(second?.acks[0]?.ids).toHaveLength(MAX_WAITING_ACKS);
    expect(second?.acks[0]?.ids).not.toContain('late');
  });

  it('calls collect only when some ack is waiting', async () => {
    const { acks, batches } = setup();
    await acks.flush();
    await vi.advanceTimersByTimeAsync(ACK_RETRY_MS);
    expect(batches()).toHaveLength(0);
  });

  it('drops only the acks collect refuses for good, passes the others, and then goes on', async () => {
    const { acks, batches, refused } = setup(() => true, ['bad']);
    acks.add('alice', 'a1');
    acks.add('bob', 'bad');
    acks.add('alice', 'a2');
    acks.add('carol', 'c1');
    await vi.advanceTimersByTimeAsync(ACK_FLUSH_MS);
    const passed = batches()
      .filter((b) => !b.acks.some((a) => a.ids.includes('bad')))
      .flatMap((b) => b.acks.flatMap((a) => a.ids));
    expect(passed.sort()).toEqual(['a1', 'a2', 'c1']);
    expect(refused()).toBe(1);
    expect(acks.waiting).toBe(0);
    // Not retried: the next batch carries only new acks.
    acks.add('alice', 'a3');
    await vi.advanceTimersByTimeAsync(ACK_RETRY_MS);
    expect(batches().at(-1)).toEqual({ acks: [{ userId: 'alice', ids: ['a3'] }] });
  });
});
