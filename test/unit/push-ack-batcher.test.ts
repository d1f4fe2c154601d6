import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PeerUnavailable } from '../../src/core/peers.js';
import { ACK_FLUSH_MS, ACK_RETRY_MS, MAX_WAITING_ACKS } from '../../src/core/tuning.js';
import { acksHop } from '../../src/protocol/hops.js';
import { AckBatcher } from '../../src/push/ack-batcher.js';
import { testLog } from '../support/silent-log.js';
import { FakePeers } from './push-fakes.js';

type AcksBody = { acks: { userId: string; ids: string[] }[] };

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

/** collect, reachable or not as `reachable()` says. */
function setup(reachable: () => boolean = () => true) {
  const collect = new FakePeers(() => {
    if (!reachable()) throw new PeerUnavailable('collect unreachable');
    return { acked: 0 };
  });
  const batches = () => collect.callsTo(acksHop.path) as AcksBody[];
  return { acks: new AckBatcher(collect, testLog('push')), batches };
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
});
