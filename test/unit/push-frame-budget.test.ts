import { afterEach, describe, expect, it, vi } from 'vitest';
import { CloseCode, ackFrame } from '../../src/protocol/frames.js';
import { FrameBudget } from '../../src/push/frame-budget.js';
import { fakeConnection } from './push-fakes.js';

afterEach(() => vi.useRealTimers());

const limits = { maxFramesPerSecond: 10, maxInvalidFrames: 3, invalidWindowMs: 20_000 };
const takeAll = (budget: FrameBudget, n: number, now: number) =>
  Array.from({ length: n }, () => budget.take(now)).filter(Boolean).length;

describe('FrameBudget', () => {
  it('allows a burst of maxFramesPerSecond, then refills at that rate, never above it', () => {
    const budget = new FrameBudget(limits, 0);
    expect(takeAll(budget, 11, 0)).toBe(10);
    expect(budget.take(50)).toBe(false);
    expect(budget.take(100)).toBe(true); // 10 per second: one more every 100 ms
    expect(budget.take(100)).toBe(false);
    expect(takeAll(budget, 20, 60_000)).toBe(10);
  });

  it('allows maxInvalidFrames per window, and as many again in the next one', () => {
    const budget = new FrameBudget(limits, 0);
    expect([1, 2, 3, 4].map(() => budget.takeInvalid(1000))).toEqual([true, true, true, false]);
    expect(budget.takeInvalid(19_999)).toBe(false);
    expect(budget.takeInvalid(20_000)).toBe(true);
  });
});

describe('Connection flood protection', () => {
  const text = (s: string) => Buffer.from(s);

  it('closes a socket with 1008 after too many invalid frames, and ignores it from then on', () => {
    const { conn, socket } = fakeConnection('mallory', { maxInvalidFrames: 3 });
    for (let i = 0; i < 3; i++) conn.receive(text('not json'), false);
    expect(socket.frames).toHaveLength(3);
    expect(socket.closed).toBeUndefined();
    conn.receive(text('not json'), false);
    expect(socket.closed).toEqual({
      code: CloseCode.PolicyViolation,
      reason: 'over 3 invalid frames',
    });
    expect(conn.receive(text(ackFrame('m1')), false)).toBeUndefined();
    expect(socket.frames).toHaveLength(3);
  });

  it('still passes on the acks a socket gets while it closes for another reason', () => {
    const { conn, socket } = fakeConnection('alice');
    conn.push('m1', 'frame');
    socket.close(CloseCode.ServiceRestart, 'node restarting: reconnect');
    expect(conn.receive(text(ackFrame('m1')), false)).toBe('m1');
    expect(conn.awaitingAcks).toBe(false);
  });

  it('forgives invalid frames of an earlier ping interval', () => {
    vi.useFakeTimers();
    const { conn, socket } = fakeConnection('alice', { maxInvalidFrames: 3 });
    for (let i = 0; i < 3; i++) conn.receive(text('{}'), false);
    vi.advanceTimersByTime(20_000);
    for (let i = 0; i < 3; i++) conn.receive(text('{}'), false);
    expect(socket.frames).toHaveLength(6);
    expect(socket.closed).toBeUndefined();
  });

  it('closes a socket with 1008 when its client sends frames faster than allowed', () => {
    vi.useFakeTimers();
    const { conn, socket } = fakeConnection('mallory', { maxFramesPerSecond: 10 });
    const acked = Array.from({ length: 12 }, (_, i) =>
      conn.receive(text(ackFrame(`m${i}`)), false),
    );
    expect(acked.filter(Boolean)).toHaveLength(10);
    expect(socket.closed).toEqual({
      code: CloseCode.PolicyViolation,
      reason: 'over 10 frames per second',
    });
  });

  it('lets a client ack at the allowed rate for as long as it likes', () => {
    vi.useFakeTimers();
    const { conn, socket } = fakeConnection('alice', { maxFramesPerSecond: 10 });
    let acked = 0;
    for (let i = 0; i < 100; i++) {
      vi.advanceTimersByTime(100);
      if (conn.receive(text(ackFrame(`m${i}`)), false)) acked++;
    }
    expect(acked).toBe(100);
    expect(socket.closed).toBeUndefined();
  });

  it('counts pings against the same budget', () => {
    vi.useFakeTimers();
    const { conn, socket } = fakeConnection('mallory', { maxFramesPerSecond: 10 });
    for (let i = 0; i < 10; i++) expect(conn.countFrame()).toBe(true);
    expect(conn.countFrame()).toBe(false);
    expect(socket.closed?.code).toBe(CloseCode.PolicyViolation);
  });

  it('lets a client ack every message pushed to it at once, however many: each push earns its ack', () => {
    vi.useFakeTimers();
    const { conn, socket } = fakeConnection('olga', { maxFramesPerSecond: 10 });
    for (let i = 0; i < 500; i++) conn.push(`m${i}`, `{"type":"message","id":"m${i}"}`);
    const acked = Array.from({ length: 500 }, (_, i) =>
      conn.receive(text(ackFrame(`m${i}`)), false),
    );
    expect(acked.filter(Boolean)).toHaveLength(500);
    expect(socket.closed).toBeUndefined();
    // Beyond what it was pushed, the budget applies again.
    for (let i = 0; i < 10; i++) conn.receive(text(ackFrame(`x${i}`)), false);
    expect(socket.closed).toBeUndefined();
    conn.receive(text(ackFrame('x10')), false);
    expect(socket.closed?.code).toBe(CloseCode.PolicyViolation);
  });
});
