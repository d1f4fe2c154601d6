import { describe, expect, it } from 'vitest';
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
