import { describe, expect, it, vi } from 'vitest';
import { PeerUnavailable } from '../../src/core/peers.js';
import { deliveredHop, MAX_IDS_PER_REQUEST } from '../../src/protocol/hops.js';
import { DeliveredBatcher } from '../../src/push/delivered-batcher.js';
import { testLog } from '../support/silent-log.js';
import { FakePeers } from './push-fakes.js';

const nextTurn = () => new Promise((r) => setImmediate(r));
const sent = (collect: FakePeers) =>
  collect.callsTo(deliveredHop.path).map((b) => (b as { ids: string[] }).ids);

describe('DeliveredBatcher (replayed ids marked delivered in collect)', () => {
  it('passes the ids of one event-loop turn in one request', async () => {
    const collect = new FakePeers(() => ({}));
    const batcher = new DeliveredBatcher({ collect, log: testLog('push') });
    batcher.add(['a']);
    batcher.add(['b', 'c']);
    await vi.waitFor(() => expect(sent(collect)).toEqual([['a', 'b', 'c']]));
  });

  it('gathers the ids that come while a request is out into the next request', async () => {
    const answers: (() => void)[] = [];
    const collect = new FakePeers(() => new Promise<object>((r) => answers.push(() => r({}))));
    const batcher = new DeliveredBatcher({ collect, log: testLog('push') });
    batcher.add(['a']);
    await nextTurn();
    batcher.add(['b']);
    await nextTurn();
    batcher.add(['c']);
    await nextTurn();
    expect(sent(collect)).toEqual([['a']]);
    answers.shift()?.();
    await vi.waitFor(() => expect(sent(collect)).toEqual([['a'], ['b', 'c']]));
    answers.shift()?.();
  });

  it(`splits more than ${MAX_IDS_PER_REQUEST} ids over requests`, async () => {
    const collect = new FakePeers(() => ({}));
    const batcher = new DeliveredBatcher({ collect, log: testLog('push') });
    batcher.add(Array.from({ length: MAX_IDS_PER_REQUEST + 1 }, (_, i) => `m${i}`));
    await vi.waitFor(() =>
      expect(sent(collect).map((ids) => ids.length)).toEqual([MAX_IDS_PER_REQUEST, 1]),
    );
  });

  it('drops a request collect could not take (the messages stay due) and goes on with the next', async () => {
    let up = false;
    const collect = new FakePeers(() => {
      if (!up) throw new PeerUnavailable('collect unreachable');
      return {};
    });
    const batcher = new DeliveredBatcher({ collect, log: testLog('push') });
    batcher.add(['a']);
    await vi.waitFor(() => expect(sent(collect)).toEqual([['a']]));
    up = true;
    batcher.add(['b']);
    await vi.waitFor(() => expect(sent(collect)).toEqual([['a'], ['b']]));
  });
});
