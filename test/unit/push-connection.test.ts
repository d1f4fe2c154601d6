import { describe, expect, it } from 'vitest';
import { MAX_TRACKED_UNACKED } from '../../src/core/tuning.js';
import { CloseCode, PING_FRAME, ackFrame } from '../../src/protocol/frames.js';
import { fakeConnection } from './push-fakes.js';

const text = (s: string) => Buffer.from(s);

describe('Connection', () => {
  it('pushes a frame, counts it and awaits its ack until the client acks it', () => {
    const { conn, socket, pushed } = fakeConnection('alice');
    expect(conn.push('m1', '{"type":"message","id":"m1"}')).toBe(true);
    expect(socket.sent).toEqual(['{"type":"message","id":"m1"}']);
    expect(pushed()).toBe(1);
    expect(conn.awaitingAcks).toBe(true);
    expect(conn.receive(text(ackFrame('m1')), false)).toBe('m1');
    expect(conn.awaitingAcks).toBe(false);
  });

  it('closes a slow consumer with 4008 instead of buffering more', () => {
    const { conn, socket, pushed } = fakeConnection('alice', { maxBufferedBytes: 100 });
    socket.bufferedAmount = 101;
    expect(conn.push('m1', 'frame')).toBe(false);
    expect(socket.closed?.code).toBe(CloseCode.SlowConsumer);
    expect(socket.sent).toEqual([]);
    expect(pushed()).toBe(0);
    expect(conn.push('m2', 'frame')).toBe(false);
  });

  it('sends nothing to a socket that is not open', () => {
    const { conn, socket } = fakeConnection('alice');
    socket.terminate();
    expect(conn.send('frame')).toBe(false);
    expect(socket.sent).toEqual([]);
  });

  it(`tracks at most ${MAX_TRACKED_UNACKED} unacked ids per socket`, () => {
    const { conn, pushed } = fakeConnection('alice');
    for (let i = 0; i < MAX_TRACKED_UNACKED + 50; i++) conn.push(`m${i}`, 'frame');
    expect(pushed()).toBe(MAX_TRACKED_UNACKED + 50);
    expect(conn.unacked?.size).toBe(MAX_TRACKED_UNACKED);
  });

  it('answers frames it cannot accept with error frames and passes no ack on', () => {
    const { conn, socket } = fakeConnection('alice');
    expect(conn.receive(text('not json'), false)).toBeUndefined();
    expect(conn.receive(text('{"type":"subscribe"}'), false)).toBeUndefined();
    expect(conn.receive(text('{"type":"ack"}'), false)).toBeUndefined();
    expect(conn.receive(text(ackFrame('m1')), true)).toBeUndefined();
    expect(socket.frames.map((f) => f.type === 'error' && f.code)).toEqual([
      'invalid_json',
      'unknown_type',
      'invalid_frame',
      'binary_not_supported',
    ]);
    expect(socket.closed).toBeUndefined();
  });

  it('answers a heartbeat ping with a pong, as a sign of life, without counting it invalid', () => {
    const { conn, socket } = fakeConnection('alice', { maxInvalidFrames: 1 });
    conn.alive = false; // a keep-alive round has pinged it
    for (let i = 0; i < 5; i++) expect(conn.receive(text(PING_FRAME), false)).toBeUndefined();
    expect(conn.alive).toBe(true);
    expect(socket.frames).toEqual(Array.from({ length: 5 }, () => ({ type: 'pong' })));
    expect(socket.closed).toBeUndefined();
  });

  it('counts heartbeat pings against the frame budget like any frame', () => {
    const { conn, socket } = fakeConnection('alice', { maxFramesPerSecond: 3 });
    for (let i = 0; i < 4; i++) conn.receive(text(PING_FRAME), false);
    expect(socket.frames).toHaveLength(3);
    expect(socket.closed).toEqual({
      code: CloseCode.PolicyViolation,
      reason: 'over 3 frames per second',
    });
  });
});
