import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import {
  messageStatus,
  mintToken,
  postMessages,
  statusBecomes,
  TestClient,
  wsUrlOf,
} from '../support/clients.js';

let cluster: TestCluster;
const clients: TestClient[] = [];

async function connect(
  userId: string,
  node: number,
  opts: { ack?: boolean } = {},
): Promise<TestClient> {
  const client = await TestClient.connect(
    wsUrlOf(cluster, node),
    userId,
    await mintToken(cluster, userId),
    opts,
  );
  clients.push(client);
  return client;
}

async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

const ingest = (body: string, key: string | null = KEYS.INGEST_API_KEY) =>
  call(`${cluster.collect.url}/v1/messages`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    },
    body,
  });

const errorShape = (code: string) => ({ error: { code, message: expect.any(String) } });

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 2 });
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

describe('the push pipeline, end to end on real processes', () => {
  it('delivers a message to every socket of the user across two nodes, and to nobody else', async () => {
    const alice1 = await connect('alice', 0);
    const alice2 = await connect('alice', 1);
    const bob = await connect('bob', 0);
    const carol = await connect('carol', 1);
    const payload = { text: 'héllo wörld — 你好 🚀', nested: { n: 1, list: [true, null, 2.5] } };

    const [id] = await postMessages(cluster, { to: 'alice', payload });
    for (const socket of [alice1, alice2]) {
      const [m] = await socket.waitForMessages(1);
      expect(m).toEqual({ type: 'message', id, payload, createdAt: expect.any(String) });
    }
    // Anything misrouted to bob or carol would have been pushed before these markers.
    await postMessages(cluster, { to: ['bob', 'carol'], payload: 'marker' });
    for (const other of [bob, carol]) {
      const messages = await other.waitForMessages(1);
      expect(messages.map((m) => m.payload)).toEqual(['marker']);
    }
    expect(alice1.messages).toHaveLength(1);
    expect(alice2.messages).toHaveLength(1);
    await statusBecomes(cluster, id as string, 'delivered');
  });

  it('creates one message per recipient, ids in request order, from either body form', async () => {
    const dan = await connect('dan', 0);
    const erin = await connect('erin', 1);
    const ids = await postMessages(cluster, {
      messages: [
        { to: ['dan', 'erin'], payload: 1 },
        { to: 'erin', payload: 2 },
      ],
    });
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
    const [danMsgs, erinMsgs] = await Promise.all([
      dan.waitForMessages(1),
      erin.waitForMessages(2),
    ]);
    expect(danMsgs.map((m) => [m.id, m.payload])).toEqual([[ids[0], 1]]);
    expect(erinMsgs.map((m) => [m.id, m.payload])).toEqual([
      [ids[1], 1],
      [ids[2], 2],
    ]);
  });

  it('marks a message acked once the client acks it', async () => {
    const frank = await connect('frank', 1, { ack: true });
    const [id] = await postMessages(cluster, { to: 'frank', payload: 'ack me' });
    await frank.waitForMessages(1);
    await waitFor(
      'the message to be acked',
      async () => (await messageStatus(cluster, id as string)) === 'acked',
      5000,
    );
  });

  it('keeps messages for an offline user pending and replays them on connect, oldest first', async () => {
    const ids: string[] = [];
    for (const n of [1, 2, 3])
      ids.push(...(await postMessages(cluster, { to: 'grace', payload: { n } })));
    for (const id of ids) expect(await messageStatus(cluster, id)).toBe('pending');
    const grace = await connect('grace', 1);
    const received = await grace.waitForMessages(3);
    expect(received.map((m) => m.id)).toEqual(ids);
    expect(received.map((m) => m.payload)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    await waitFor(
      'replayed messages to be marked delivered',
      async () => (await messageStatus(cluster, ids[2] as string)) === 'delivered',
    );
  });

  it('answers a repeated idempotency key with the same id and delivers once', async () => {
    const heidi = await connect('heidi', 0);
    const first = await postMessages(cluster, {
      to: 'heidi',
      payload: 'once',
      idempotencyKey: 'order-42',
    });
    const second = await postMessages(cluster, {
      to: 'heidi',
      payload: 'once',
      idempotencyKey: 'order-42',
    });
    expect(second).toEqual(first);
    // The key with another payload is a mistake of the sender's, not a retry: refused, never
    // answered with the first message's id as if it were stored.
    const reused = await ingest(
      JSON.stringify({ to: 'heidi', payload: 'other', idempotencyKey: 'order-42' }),
    );
    expect(reused).toMatchObject({
      status: 422,
      body: {
        error: {
          code: 'idempotency_conflict',
          message: expect.stringContaining(first[0] ?? 'an id'),
        },
      },
    });
    await heidi.waitForMessages(1);
    await postMessages(cluster, { to: 'heidi', payload: 'after' });
    const messages = await heidi.waitForMessages(2);
    expect(messages.map((m) => m.payload)).toEqual(['once', 'after']);
  });

  it('exposes Prometheus metrics on every service, counting each stage of the data path', async () => {
    // A message of its own through every stage, so this test needs no other to have run.
    const mia = await connect('mia', 0, { ack: true });
    const [id = ''] = await postMessages(cluster, { to: 'mia', payload: 'counted' });
    await mia.waitForMessages(1);
    await waitFor(
      'the ack to reach collect',
      async () => (await messageStatus(cluster, id)) === 'acked',
    );
    const text = async (url: string): Promise<string> => (await fetch(`${url}/metrics`)).text();
    const [collect, dispatch, push0, push1] = await Promise.all([
      text(cluster.collect.url),
      text(cluster.dispatch.url),
      text(cluster.push[0]!.url),
      text(cluster.push[1]!.url),
    ]);
    const count = (body: string, stage: string): number =>
      Number(
        new RegExp(`push_messages_total\\{stage="${stage}"[^}]*\\} (\\d+)`).exec(body)?.[1] ?? 0,
      );
    expect(count(collect, 'ingested')).toBeGreaterThan(0);
    expect(count(collect, 'acked')).toBeGreaterThan(0);
    expect(count(dispatch, 'handed_off')).toBeGreaterThan(0);
    expect(count(push0, 'delivered') + count(push1, 'delivered')).toBeGreaterThan(0);
    expect(push0).toMatch(/push_connections\{service="push"\} \d+/);
    expect(push0).toContain('push_ingest_to_socket_seconds_bucket');
    expect(collect).toMatch(/push_messages_stored\{status="pending",service="collect"\} \d+/);
    expect(await text(cluster.auth.url)).toContain('process_resident_memory_bytes');
  });

  // The node with fewer connections is picked first (the other may hold the clients of
  // the tests above, and one may briefly fail a check on a loaded machine), so ask until
  // each node has been handed out: a balancer that always names one node never gets there.
  it('spreads /v1/connect over both push nodes, each answer naming the other as fallback', async () => {
    const urls = new Set<string>();
    const expected = [wsUrlOf(cluster, 0), wsUrlOf(cluster, 1)].sort();
    let namedTheOther = 0;
    await waitFor(
      'both push nodes handed out by /v1/connect, with the other as fallback',
      async () => {
        const res = await call(`${cluster.dispatch.url}/v1/connect`);
        expect(res.status).toBe(200);
        const { url, fallbacks } = res.body as { url: string; fallbacks: string[] };
        urls.add(url);
        // Never the node handed out; the other one unless it is out of the passing set.
        expect(fallbacks).not.toContain(url);
        if (fallbacks.length === 1 && fallbacks[0] === expected.find((u) => u !== url))
          namedTheOther++;
        return urls.size === 2 && namedTheOther > 0;
      },
      10_000,
      20,
    );
    expect([...urls].sort()).toEqual(expected);
  });
});

describe('bad input gets a clear status and JSON error, and the cluster stays healthy', () => {
  it('refuses ingestion without the right key', async () => {
    const body = JSON.stringify({ to: 'x', payload: 1 });
    expect(await ingest(body, null)).toEqual({ status: 401, body: errorShape('unauthorized') });
    expect(await ingest(body, 'wrong-key')).toEqual({
      status: 401,
      body: errorShape('unauthorized'),
    });
    expect(await call(`${cluster.collect.url}/v1/messages/whatever`)).toEqual({
      status: 401,
      body: errorShape('unauthorized'),
    });
  });

  it('answers malformed JSON and invalid fields with 400', async () => {
    expect(await ingest('{"to": "x", ')).toEqual({ status: 400, body: errorShape('invalid_json') });
    expect(await ingest('')).toEqual({ status: 400, body: errorShape('invalid_json') });
    for (const bad of [
      {},
      { to: 'x' },
      { to: '', payload: 1 },
      { to: [], payload: 1 },
      { to: 5, payload: 1 },
      { messages: [] },
      { to: 'x', payload: 1, extra: true },
      [1, 2],
    ]) {
      expect(await ingest(JSON.stringify(bad)), JSON.stringify(bad)).toEqual({
        status: 400,
        body: errorShape('invalid_request'),
      });
    }
  });

  it('delivers numbers as the value sent, and refuses one that would arrive as another', async () => {
    const dave = await connect('dave', 0);
    // Spelt differently, the same doubles; digits inside strings are not numbers.
    const sent =
      '{"a":1.0,"b":1E2,"c":0.10000000000000001,"d":9007199254740992,"e":-0,' +
      '"id":"12345678901234567890"}';
    const ok = await ingest(`{"to":"dave","payload":${sent}}`);
    expect(ok.status).toBe(202);
    const [m] = await dave.waitForMessages(1);
    // -0 arrives as 0 (JSON.stringify's spelling), equal as a number.
    const arrived = { ...(JSON.parse(sent) as object), e: 0 };
    expect(m?.payload).toEqual(arrived);
    // 2^53 + 1 would arrive as 2^53 (and 1e400 as null): refused, and nothing of the request
    // is stored, not even its valid first message.
    for (const literal of ['9007199254740993', '1e400']) {
      const refused = await ingest(
        `{"messages":[{"to":"dave","payload":"first"},{"to":"dave","payload":{"n":${literal}}}]}`,
      );
      expect(refused).toEqual({ status: 400, body: errorShape('inexact_number') });
      expect((refused.body as { error: { message: string } }).error.message).toContain(literal);
    }
    await postMessages(cluster, { to: 'dave', payload: 'marker' });
    const next = await dave.waitForMessages(2);
    expect(next.map((x) => x.payload)).toEqual([arrived, 'marker']);
  });

  it('answers a body over the limit with 413', async () => {
    const huge = JSON.stringify({ to: 'x', payload: 'a'.repeat(1024 * 1024 + 10) });
    expect(await ingest(huge)).toEqual({ status: 413, body: errorShape('payload_too_large') });
  });

  it('answers an unknown message id with 404', async () => {
    const res = await call(`${cluster.collect.url}/v1/messages/nope`, {
      headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
    });
    expect(res).toEqual({ status: 404, body: errorShape('not_found') });
  });

  it('refuses token minting without the admin key, and forged, expired or unsigned tokens', async () => {
    const mint = (key: string) =>
      call(`${cluster.auth.url}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}` },
        body: JSON.stringify({ userId: 'x' }),
      });
    expect(await mint('wrong')).toEqual({ status: 401, body: errorShape('unauthorized') });
    const verify = (token: string) =>
      call(`${cluster.auth.url}/v1/verify`, { method: 'POST', body: JSON.stringify({ token }) });
    const claims = { sub: 'mallory', iss: 'push-cluster', aud: 'push-cluster' };
    const forged = jwt.sign(
      { ...claims, exp: Math.floor(Date.now() / 1000) + 60 },
      'not-the-secret',
      { algorithm: 'HS256' },
    );
    const expired = jwt.sign(
      { ...claims, exp: Math.floor(Date.now() / 1000) - 10 },
      KEYS.JWT_SECRET,
      { algorithm: 'HS256' },
    );
    const noExpiry = jwt.sign(claims, KEYS.JWT_SECRET, { algorithm: 'HS256' });
    const unsigned = jwt.sign({ ...claims, exp: Math.floor(Date.now() / 1000) + 60 }, '', {
      algorithm: 'none',
    });
    for (const token of [forged, expired, noExpiry, unsigned, 'garbage']) {
      expect(await verify(token)).toEqual({ status: 401, body: errorShape('invalid_token') });
    }
    const good = await verify(await mintToken(cluster, 'trent'));
    expect(good).toEqual({ status: 200, body: { userId: 'trent', expiresAt: expect.any(String) } });
  });

  it('refuses a WebSocket upgrade without a valid token with 401 before upgrading', async () => {
    for (const url of [wsUrlOf(cluster, 0), `${wsUrlOf(cluster, 0)}?token=garbage`]) {
      const status = await new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('open', () => reject(new Error('upgraded without a valid token')));
        ws.once('error', () => undefined);
      });
      expect(status).toBe(401);
    }
  });

  it('answers bad frames with error frames or a close code, without touching other sockets', async () => {
    const victim = await connect('victor', 0);
    const bystander = await connect('victor', 0);
    victim.ws.send('not json');
    victim.ws.send(JSON.stringify({ type: 'subscribe' }));
    victim.ws.send(JSON.stringify({ type: 'ack' }));
    await waitFor('three error frames', () => victim.frames.length >= 3);
    expect(victim.frames.map((f) => (f.type === 'error' ? f.code : f.type))).toEqual([
      'invalid_json',
      'unknown_type',
      'invalid_frame',
    ]);
    victim.ws.send('x'.repeat(65 * 1024));
    await waitFor('the oversized frame to close the socket', () => victim.closeCode !== undefined);
    expect(victim.closeCode).toBe(1009);
    await postMessages(cluster, { to: 'victor', payload: 'still here' });
    const [m] = await bystander.waitForMessages(1);
    expect(m?.payload).toBe('still here');
    expect(bystander.closeCode).toBeUndefined();
  });

  it('keeps internal routes closed to callers without the internal secret', async () => {
    const res = await call(`${cluster.collect.url}/internal/unacked`, {
      method: 'POST',
      body: '{"userId":"alice","limit":10}',
    });
    expect(res).toEqual({ status: 401, body: errorShape('unauthorized') });
    const push = await call(`http://127.0.0.1:${cluster.push[0]?.port}/internal/forward`, {
      method: 'POST',
      body: '{"messages":[]}',
    });
    expect(push.status).toBe(401);
  });

  it('is still healthy after all of the above', async () => {
    for (const proc of cluster.all()) {
      expect(proc.child.running, proc.id).toBe(true);
      expect((await call(`${proc.url}/health`)).status, proc.id).toBe(200);
    }
  });
});
