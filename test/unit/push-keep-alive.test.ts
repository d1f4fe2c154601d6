import { afterEach, describe, expect, it, vi } from 'vitest';
import { CloseCode, PING_FRAME } from '../../src/protocol/frames.js';
import { KeepAlive } from '../../src/push/keep-alive.js';
import { fakeConnection } from './push-fakes.js';

const INTERVAL = 20_000;

/** A keep-alive over the given sockets, on a clock the test moves. */
function setup(...conns: ReturnType<typeof fakeConnection>[]) {
  const clock = { t: 1_000_000 };
  const keepAlive = new KeepAlive({
    connections: () => conns.map((c) => c.conn),
    intervalMs: INTERVAL,
    now: () => clock.t,
  });
  keepAlive.start();
  keepAlive.stop(); // the test runs the rounds itself
  const round = (afterMs = INTERVAL) => {
    clock.t += afterMs;
    keepAlive.round();
  };
  return { clock, round };
}

describe('KeepAlive', () => {
  it('pings every socket, and cuts one that did not answer the last ping', () => {
    const answers = fakeConnection('alice');
    const silent = fakeConnection('bob');
    const { round } = setup(answers, silent);
    round();
    expect([answers.socket.pings, silent.socket.pings]).toEqual([1, 1]);
    answers.conn.alive = true; // its pong came
    round();
    expect(answers.socket.terminated).toBe(false);
    expect(answers.socket.pings).toBe(2);
    expect(silent.socket.terminated).toBe(true);
    expect(silent.socket.pings).toBe(1);
  });

  it('cuts no one on the round after a stall: their pongs may still be unread', () => {
    const silent = fakeConnection('bob');
    const { round } = setup(silent);
    round();
    round(INTERVAL * 3); // the process was stopped for a while
    expect(silent.socket.terminated).toBe(false);
    expect(silent.socket.pings).toBe(2);
    round(); // a normal round: still no pong
    expect(silent.socket.terminated).toBe(true);
  });

  it('closes a socket whose token expired with 4001', () => {
    const expiring = fakeConnection('alice', { tokenExpiresAt: 1_000_000 + INTERVAL * 1.5 });
    const { round } = setup(expiring);
    round();
    expect(expiring.socket.closed).toBeUndefined();
    expiring.conn.alive = true;
    round();
    expect(expiring.socket.closed).toEqual({
      code: CloseCode.TokenExpired,
      reason: 'token expired',
    });
    expect(expiring.socket.pings).toBe(1);
  });

  it('keeps a socket whose client sent a heartbeat ping frame instead of a protocol pong', () => {
    const browser = fakeConnection('alice');
    const { round } = setup(browser);
    round();
    browser.conn.receive(Buffer.from(PING_FRAME), false);
    round();
    expect(browser.socket.terminated).toBe(false);
    expect(browser.socket.pings).toBe(2);
    round(); // nothing since: cut
    expect(browser.socket.terminated).toBe(true);
  });
});

describe('KeepAlive over many sockets', () => {
  /** n sockets, two per slice, on fake timers (put back after each test). */
  function sliced(n: number) {
    vi.useFakeTimers();
    const conns = Array.from({ length: n }, (_, i) => fakeConnection(`user${i}`));
    const keepAlive = new KeepAlive({
      connections: () => conns.map((c) => c.conn),
      intervalMs: INTERVAL,
      sliceSize: 2,
    });
    return { conns, keepAlive };
  }
  afterEach(() => vi.useRealTimers());

  it('pings a slice at a time, the slices spread over a quarter of the interval', () => {
    const { conns, keepAlive } = sliced(5);
    const pings = () => conns.map((c) => c.socket.pings);
    keepAlive.round();
    expect(pings()).toEqual([1, 1, 0, 0, 0]);
    // Three slices over INTERVAL / 4: one every INTERVAL / 8.
    vi.advanceTimersByTime(INTERVAL / 8 - 1);
    expect(pings()).toEqual([1, 1, 0, 0, 0]);
    vi.advanceTimersByTime(1);
    expect(pings()).toEqual([1, 1, 1, 1, 0]);
    vi.advanceTimersByTime(INTERVAL / 8);
    expect(pings()).toEqual([1, 1, 1, 1, 1]);
    keepAlive.stop();
  });

  it('judges each socket an interval after its own ping, and skips one closed meanwhile', () => {
    const { conns, keepAlive } = sliced(4);
    keepAlive.start();
    vi.advanceTimersByTime(INTERVAL); // round 1, first slice
    conns[2]!.socket.terminate(); // closes before its slice comes
    vi.advanceTimersByTime(INTERVAL / 4); // round 1, second slice
    expect(conns.map((c) => c.socket.pings)).toEqual([1, 1, 0, 1]);
    conns[0]!.conn.alive = true; // pongs from the first and the last
    conns[3]!.conn.alive = true;
    vi.advanceTimersByTime((INTERVAL * 3) / 4); // round 2, first slice
    expect(conns[0]!.socket.terminated).toBe(false);
    expect(conns[1]!.socket.terminated).toBe(true); // no pong: cut
    vi.advanceTimersByTime(INTERVAL / 4); // round 2, second slice
    expect(conns[3]!.socket.terminated).toBe(false);
    expect(conns.map((c) => c.socket.pings)).toEqual([2, 1, 0, 2]);
    keepAlive.stop();
  });
});
