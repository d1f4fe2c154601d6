import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { WebSocket, WebSocketServer } from 'ws';
import type { AuthOutcome } from '../../src/push/authenticator.js';
import { upgradeHandler } from '../../src/push/upgrade.js';
import { testLog } from '../support/silent-log.js';

/** Runs one upgrade request through the handler: what the raw socket got, who was let in. */
async function upgrade(
  url: string,
  o: {
    draining?: boolean;
    /** The node's Consul agent is unreachable. */
    outOfRouting?: boolean;
    /** The drain begins while auth checks the token. */
    drainDuringCheck?: boolean;
    outcome?: AuthOutcome;
    authorization?: string;
    /** Sockets the user already holds on the node (the limit here is 3). */
    held?: number;
    /** The node holds as many sockets as it accepts; 'during-check': from the token check on. */
    full?: boolean | 'during-check';
  } = {},
) {
  let draining = o.draining ?? false;
  let full = o.full === true;
  const tokens: (string | undefined)[] = [];
  const opened: string[] = [];
  let answer = '';
  const socket = {
    destroyed: false,
    end(text: string) {
      answer = text;
      this.destroyed = true;
    },
  };
  const handler = upgradeHandler({
    authenticator: {
      verify: async (token) => {
        tokens.push(token);
        if (o.drainDuringCheck) draining = true;
        if (o.full === 'during-check') full = true;
        return o.outcome ?? { ok: true, userId: 'alice', expiresAt: 0 };
      },
    },
    isDraining: () => draining,
    isOutOfRouting: async () => o.outOfRouting ?? false,
    isFull: () => full,
    socketsOf: () => o.held ?? 0,
    maxSocketsPerUser: 3,
    wss: {
      handleUpgrade: (_req, _socket, _head, done) => done({} as WebSocket, _req),
    } as Pick<WebSocketServer, 'handleUpgrade'>,
    open: (_ws, userId) => void opened.push(userId),
    log: testLog('push'),
  });
  const req = { url, headers: { authorization: o.authorization } } as IncomingMessage;
  handler(req, socket as unknown as Duplex, Buffer.alloc(0));
  await new Promise((r) => setImmediate(r));
  const [head = '', body = ''] = answer.split('\r\n\r\n');
  return { status: Number(head.split(' ')[1] ?? 0), body, tokens, opened };
}

describe('upgrade', () => {
  it('lets in a token auth accepts, from the query or the Authorization header', async () => {
    const byQuery = await upgrade('/ws?token=t1');
    expect(byQuery).toMatchObject({ status: 0, tokens: ['t1'], opened: ['alice'] });
    const byHeader = await upgrade('/ws', { authorization: 'Bearer t2' });
    expect(byHeader).toMatchObject({ tokens: ['t2'], opened: ['alice'] });
  });

  it('answers 404 for any other path or spelling, before asking auth', async () => {
    for (const url of ['/', '/wss?token=t', '//ws?token=t', '/ws/?token=t', '/%77s?token=t']) {
      const res = await upgrade(url);
      expect(res.status, url).toBe(404);
      expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'not_found' } });
      expect(res.tokens).toEqual([]);
    }
  });

  it('answers 429 too_many_sockets to a user at WS_MAX_SOCKETS_PER_USER, and lets in one below it', async () => {
    const full = await upgrade('/ws?token=t1', { held: 3 });
    expect(full.status).toBe(429);
    expect(JSON.parse(full.body)).toMatchObject({ error: { code: 'too_many_sockets' } });
    expect(JSON.parse(full.body).error.message).toContain('WS_MAX_SOCKETS_PER_USER');
    expect(full.opened).toEqual([]);
    const below = await upgrade('/ws?token=t1', { held: 2 });
    expect(below).toMatchObject({ status: 0, opened: ['alice'] });
  });

  it('answers 503 full while the node holds WS_MAX_CONNECTIONS sockets, before asking auth and again after', async () => {
    for (const full of [true, 'during-check'] as const) {
      const res = await upgrade('/ws?token=t1', { full });
      expect(res.status).toBe(503);
      expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'full' } });
      expect(res.opened).toEqual([]);
      expect(res.tokens).toEqual(full === true ? [] : ['t1']);
    }
  });

  it('answers 503 draining while the node shuts down', async () => {
    const res = await upgrade('/ws?token=t1', { draining: true });
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'draining' } });
    expect(res.opened).toEqual([]);
  });

  it('answers 503 out_of_routing while its Consul agent is unreachable, before asking auth', async () => {
    const res = await upgrade('/ws?token=t1', { outOfRouting: true });
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'out_of_routing' } });
    expect(res.tokens).toEqual([]);
    expect(res.opened).toEqual([]);
  });

  it('answers 503 draining when the drain began during the token check, and lets no one in', async () => {
    const res = await upgrade('/ws?token=t1', { drainDuringCheck: true });
    expect(res.tokens).toEqual(['t1']);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ error: { code: 'draining' } });
    expect(res.opened).toEqual([]);
  });

  it("answers auth's refusal with its status and code", async () => {
    const outcome: AuthOutcome = { ok: false, status: 401, code: 'missing_token', message: 'm' };
    const res = await upgrade('/ws', { outcome });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toEqual({ error: { code: 'missing_token', message: 'm' } });
    expect(res.tokens).toEqual([undefined]);
    expect(res.opened).toEqual([]);
  });
});
