import { describe, expect, it } from 'vitest';
import {
  PushClient,
  type PushClientOptions,
  type WebSocketConstructor,
} from '../../src/client/push-client.js';

// Never opened: the constructor only checks its options.
class NoSocket {
  readyState = 0;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  send(): void {}
  close(): void {}
}

const valid: PushClientOptions = {
  connectUrl: 'http://127.0.0.1:7003/v1/connect',
  getToken: () => 'token',
  WebSocket: NoSocket as unknown as WebSocketConstructor,
};
const make = (o: Partial<PushClientOptions> | Record<string, unknown>) =>
  new PushClient({ ...valid, ...o } as PushClientOptions);

describe('PushClient options', () => {
  it('accepts the defaults and sensible values', () => {
    expect(make({}).connectionState).toBe('closed');
    const client = make({
      dedupeWindow: 1,
      backoff: { initialMs: 100, maxMs: 100 },
      connectTimeoutMs: 1,
      heartbeatIntervalMs: 60_000,
      autoAck: false,
    });
    expect(client.connectionState).toBe('closed');
  });

  it.each([
    [{ dedupeWindow: 0 }, /dedupeWindow must be an integer of at least 1, got 0/],
    [{ dedupeWindow: -5 }, /dedupeWindow/],
    [{ dedupeWindow: 2.5 }, /dedupeWindow/],
    [{ dedupeWindow: Number.NaN }, /dedupeWindow/],
    [{ backoff: { initialMs: 0 } }, /backoff.initialMs must be a number of milliseconds above 0/],
    [{ backoff: { maxMs: -1 } }, /backoff.maxMs/],
    [
      { backoff: { initialMs: 500, maxMs: 100 } },
      /initialMs \(500\) must not exceed .*maxMs \(100\)/,
    ],
    [{ backoff: { initialMs: 20_000 } }, /must not exceed backoff.maxMs \(10000\)/],
    [{ connectTimeoutMs: 0 }, /connectTimeoutMs/],
    [{ connectTimeoutMs: Number.POSITIVE_INFINITY }, /connectTimeoutMs/],
    [{ connectTimeoutMs: 2 ** 31 }, /connectTimeoutMs .* at most 2147483647/],
    [{ heartbeatIntervalMs: -1000 }, /heartbeatIntervalMs/],
    [{ heartbeatIntervalMs: '15000' }, /heartbeatIntervalMs/],
    [
      { connectUrl: 'not a url' },
      /connectUrl "not a url" is not a URL \(relative URLs only work in a page\)/,
    ],
    [{ connectUrl: '/v1/connect' }, /relative URLs only work in a page/],
    [{ connectUrl: 'ws://127.0.0.1:7003/v1/connect' }, /connectUrl must be http: or https:/],
    [{ connectUrl: undefined }, /connectUrl must be the URL of \/v1\/connect/],
    [{ getToken: 'token' }, /getToken must be a function/],
    [{ autoAck: 'no' }, /autoAck must be a boolean/],
  ])('refuses %j with a clear error', (bad, message) => {
    expect(() => make(bad)).toThrow(message);
  });

  it('needs a WebSocket implementation where there is no global one', () => {
    const global = globalThis as { WebSocket?: unknown };
    const saved = global.WebSocket;
    delete global.WebSocket;
    try {
      expect(() => make({ WebSocket: undefined })).toThrow(/no WebSocket implementation/);
    } finally {
      if (saved !== undefined) global.WebSocket = saved;
    }
  });
});
