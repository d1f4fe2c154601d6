import { afterEach, describe, expect, it, vi } from 'vitest';
import { DRAIN_ACK_WAIT_MS } from '../../src/core/tuning.js';
import { CloseCode } from '../../src/protocol/frames.js';
import type { Connection } from '../../src/push/connection.js';
import { drain } from '../../src/push/drain.js';
import { Hub } from '../../src/push/hub.js';
import { fakeConnection } from './push-fakes.js';

afterEach(() => vi.useRealTimers());

function setup() {
  const hub = new Hub<Connection>();
  const steps: string[] = [];
  const acks = { flush: async () => void steps.push('flush acks') };
  const bindings = {
    unbindAll: async (users: readonly string[]) => void steps.push(`unbind ${users.join(',')}`),
  };
  const alice = fakeConnection('alice');
  const bob = fakeConnection('bob');
  hub.add(alice.conn);
  hub.add(bob.conn);
  return { hub, steps, alice, bob, run: () => drain({ hub, acks, bindings }) };
}

describe('drain', () => {
  it('waits for the acks of what was pushed, then closes every socket with 1012 and unbinds', async () => {
    vi.useFakeTimers();
    const { steps, alice, bob, run } = setup();
    alice.conn.push('m1', 'frame');
    let done = false;
    const draining = run().then(() => (done = true));
    await vi.advanceTimersByTimeAsync(100);
    expect(alice.socket.closed).toBeUndefined();
    alice.conn.receive(Buffer.from('{"type":"ack","id":"m1"}'), false);
    await vi.advanceTimersByTimeAsync(20);
    await draining;
    expect(done).toBe(true);
    expect(alice.socket.closed?.code).toBe(CloseCode.ServiceRestart);
    expect(bob.socket.closed?.code).toBe(CloseCode.ServiceRestart);
    expect(steps).toEqual(['flush acks', 'unbind alice,bob', 'flush acks']);
  });

  it(`closes sockets after ${DRAIN_ACK_WAIT_MS} ms when acks do not come`, async () => {
    vi.useFakeTimers();
    const { alice, run } = setup();
    alice.conn.push('m1', 'frame');
    const draining = run();
    await vi.advanceTimersByTimeAsync(DRAIN_ACK_WAIT_MS - 100);
    expect(alice.socket.closed).toBeUndefined();
    await vi.advanceTimersByTimeAsync(200);
    await draining;
    expect(alice.socket.closed?.code).toBe(CloseCode.ServiceRestart);
  });
});
