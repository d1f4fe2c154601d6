import type { Context } from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import { Health } from '../../src/core/health.js';

/** The status and body /health would answer now. */
function answer(health: Health): { status: number; body: unknown } {
  const ctx = { status: 0, body: undefined } as unknown as Context;
  health.handler(ctx);
  return { status: ctx.status, body: ctx.body };
}

const started: Health[] = [];
afterEach(() => {
  for (const h of started.splice(0)) h.stop();
});

describe('Health (/health from the last round of probes)', () => {
  it('answers at once from the last round, even while a probe hangs', async () => {
    let hang = false;
    const health = new Health({
      probes: { redis: () => (hang ? new Promise<void>(() => undefined) : undefined) },
      isDraining: () => false,
      intervalMs: 20,
      probeTimeoutMs: 100,
    });
    started.push(health);
    await health.start();
    expect(answer(health)).toEqual({ status: 200, body: { status: 'ok' } });
    hang = true;
    // The hanging round has not timed out yet: the answer is still the last round's.
    await new Promise((r) => setTimeout(r, 50));
    expect(answer(health).status).toBe(200);
    // Once it has, the answer says so.
    await new Promise((r) => setTimeout(r, 120));
    expect(answer(health)).toEqual({
      status: 503,
      body: { status: 'unavailable', failures: { redis: 'redis did not answer within 100ms' } },
    });
    hang = false;
    await new Promise((r) => setTimeout(r, 150));
    expect(answer(health).status).toBe(200);
  });

  it('gives a real first answer: a probe failing at start fails it', async () => {
    const health = new Health({
      probes: {
        store: () => {
          throw new Error('disk full');
        },
        redis: () => undefined,
      },
      isDraining: () => false,
      intervalMs: 1000,
      probeTimeoutMs: 100,
    });
    started.push(health);
    await health.start();
    expect(answer(health)).toEqual({
      status: 503,
      body: { status: 'unavailable', failures: { store: 'disk full' } },
    });
  });

  it('runs the at-answer checks at each answer, and fails while draining', async () => {
    let stalled = false;
    let draining = false;
    const health = new Health({
      probes: {},
      atAnswer: { eventLoop: () => (stalled ? 'event loop stalled for 1500 ms' : undefined) },
      isDraining: () => draining,
      intervalMs: 1000,
      probeTimeoutMs: 100,
    });
    started.push(health);
    await health.start();
    expect(answer(health).status).toBe(200);
    stalled = true;
    expect(answer(health).body).toEqual({
      status: 'unavailable',
      failures: { eventLoop: 'event loop stalled for 1500 ms' },
    });
    stalled = false;
    draining = true;
    expect(answer(health)).toEqual({
      status: 503,
      body: { status: 'unavailable', failures: { lifecycle: 'draining' } },
    });
  });
});
