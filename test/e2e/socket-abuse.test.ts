import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { ackFrame, CloseCode } from '../../src/protocol/frames.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { HANDSHAKE_HEADERS, rawRequest } from '../support/raw-http.js';
import { messageStatus, mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';

// Issue 9: a client flooding a push node with frames is cut off, and neither the node nor
// the other clients on it notice. Defaults: WS_MAX_INVALID_FRAMES=20, WS_MAX_FRAMES_PER_SECOND=2000.

let cluster: TestCluster;
const clients: TestClient[] = [];

const MAX_SOCKETS_PER_USER = 4;
const MAX_CONNECTIONS = 60;

beforeAll(async () => {
  cluster = await startCluster({
    pushNodes: 1,
    env: {
      WS_MAX_SOCKETS_PER_USER: String(MAX_SOCKETS_PER_USER),
      WS_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
    },
  });
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

async function connect(name: string, ack = false) {
  const userId = `${name}-${process.pid}`;
  const client = await TestClient.connect(
    wsUrlOf(cluster, 0),
    userId,
    await mintToken(cluster, userId),
    { ack },
  );
  clients.push(client);
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    client.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  return { client, closed };
}

/** Sends messages to `bystander` while `flood` runs, and checks every one arrives. */
async function bystanderKeepsReceiving(bystander: TestClient, flood: () => void): Promise<void> {
  const before = bystander.messages.length;
  const posting = postMessages(cluster, {
    messages: Array.from({ length: 50 }, (_, i) => ({ to: bystander.userId, payload: i })),
  });
  flood();
  await posting;
  await bystander.waitForMessages(before + 50);
  expect(bystander.closeCode).toBeUndefined();
}

describe('a push node under a flood of WebSocket frames', () => {
  it('closes a socket flooding invalid frames with 1008 after 20 error frames', async () => {
    const { client: bystander } = await connect('bystander-1', true);
    const { client: mallory, closed } = await connect('mallory-1');
    await bystanderKeepsReceiving(bystander, () => {
      for (let i = 0; i < 5000; i++) mallory.ws.send('not json');
    });
    expect(await closed).toEqual({
      code: CloseCode.PolicyViolation,
      reason: 'over 20 invalid frames',
    });
    expect(mallory.frames.filter((f) => f.type === 'error')).toHaveLength(20);
  });

  it('closes a socket flooding acks faster than 2000 a second with 1008', async () => {
    const { client: bystander } = await connect('bystander-2', true);
    const { client: mallory, closed } = await connect('mallory-2');
    await bystanderKeepsReceiving(bystander, () => {
      for (let i = 0; i < 20_000; i++) mallory.ws.send(ackFrame(`m${i}`));
    });
    expect(await closed).toEqual({
      code: CloseCode.PolicyViolation,
      reason: 'over 2000 frames per second',
    });
  });

  it('cuts a socket flooding pings', async () => {
    const { client: mallory } = await connect('mallory-3');
    for (let i = 0; i < 20_000; i++) mallory.ws.ping();
    // Over the frame budget (1008), unless ws cut it first for leaving its pongs unread
    // (1006: terminated without a close frame).
    await waitFor('the ping flood to be cut', () => mallory.closeCode !== undefined);
    expect([CloseCode.PolicyViolation, 1006]).toContain(mallory.closeCode);
  });

  it('lets a client ack a burst of a thousand messages', async () => {
    const { client: alice } = await connect('alice', true);
    const ids = await postMessages(cluster, {
      messages: Array.from({ length: 1000 }, (_, i) => ({ to: alice.userId, payload: i })),
    });
    await alice.waitForMessages(1000, 10_000);
    for (const id of [ids[0], ids[999]] as string[])
      await waitFor(`the ack of ${id} to reach collect`, async () => {
        return (await messageStatus(cluster, id)) === 'acked';
      });
    expect(alice.closeCode).toBeUndefined();
  });

  it('lets one user hold WS_MAX_SOCKETS_PER_USER sockets on a node, however fast they race, and refuses one more with 429', async () => {
    const userId = `many-${process.pid}`;
    const token = await mintToken(cluster, userId);
    // Twelve connects at once: the token checks overlap, and only the count at open decides.
    const outcomes = await Promise.all(
      Array.from(
        { length: 12 },
        () =>
          new Promise<{ ws?: TestClient; status?: number }>((resolve) => {
            TestClient.connect(wsUrlOf(cluster, 0), userId, token, { ack: true }).then(
              (ws) => {
                clients.push(ws);
                resolve({ ws });
              },
              (err: Error) => resolve({ status: Number(/(\d{3})/.exec(err.message)?.[1]) }),
            );
          }),
      ),
    );
    const open = outcomes.flatMap((o) => (o.ws ? [o.ws] : []));
    expect(open).toHaveLength(MAX_SOCKETS_PER_USER);
    expect(outcomes.filter((o) => o.status === 429)).toHaveLength(12 - MAX_SOCKETS_PER_USER);

    // Every socket it holds gets its messages; another user is not affected.
    const { client: other } = await connect('other-user', true);
    await postMessages(cluster, { to: userId, payload: 'to each socket' });
    for (const ws of open) await ws.waitForMessages(1);
    await postMessages(cluster, { to: other.userId, payload: 'hi' });
    await other.waitForMessages(1);

    // One socket closed frees its place.
    const gone = open[0] as TestClient;
    const closed = new Promise((r) => gone.ws.once('close', r));
    gone.close();
    await closed;
    await waitFor('the node to count the closed socket', async () => {
      try {
        clients.push(await TestClient.connect(wsUrlOf(cluster, 0), userId, token));
        return true;
      } catch {
        return false;
      }
    });
  });

  it('refuses a socket past WS_MAX_CONNECTIONS with 503 full, stays passing but out of /v1/connect, and takes one again once a socket closes', async () => {
    const push = cluster.push[0] as TestCluster['push'][number];
    const metrics = await (await fetch(`${push.url}/metrics`)).text();
    const held = Number(/^push_connections(?:\{[^}]*\})? (\d+)$/m.exec(metrics)?.[1]);
    expect(held).toBeLessThan(MAX_CONNECTIONS);
    const open = async (userId: string) =>
      TestClient.connect(wsUrlOf(cluster, 0), userId, await mintToken(cluster, userId));
    const filled: TestClient[] = [];
    try {
      for (let i = held; i < MAX_CONNECTIONS; i++) filled.push(await open(`fill-${i}`));
      const token = await mintToken(cluster, 'one-too-many');
      const answer = await rawRequest(push.port, {
        target: `/ws?token=${encodeURIComponent(token)}`,
        headers: [...HANDSHAKE_HEADERS],
      });
      expect([answer.status, JSON.parse(answer.body).error?.code]).toEqual([503, 'full']);
      expect((await fetch(`${push.url}/health`)).status).toBe(200);
      // Dispatch learns it from the node's Consul meta and stops handing the node out: a
      // client would only be refused there.
      const askDispatch = async () => {
        const res = await fetch(`${cluster.dispatch.url}/v1/connect`);
        return { status: res.status, body: (await res.json()) as { error?: { message: string } } };
      };
      await waitFor(
        'dispatch to see the node full',
        async () => (await askDispatch()).status === 503,
        15_000,
      );
      expect((await askDispatch()).body.error?.message).toContain('WS_MAX_CONNECTIONS');
      // The sockets it holds are served as before.
      await postMessages(cluster, { to: 'fill-59', payload: 'still here' });
      await filled.at(-1)?.waitForMessages(1);

      const gone = filled.shift() as TestClient;
      const closed = new Promise((r) => gone.ws.once('close', r));
      gone.close();
      await closed;
      await waitFor(
        'dispatch to hand the node out again',
        async () => (await askDispatch()).status === 200,
        15_000,
      );
      await waitFor('a place to free up', async () => {
        try {
          filled.push(await open('one-more'));
          return true;
        } catch {
          return false;
        }
      });
    } finally {
      for (const c of filled) c.close();
    }
  });

  it('is still healthy and serving after the floods', async () => {
    const push = cluster.push[0];
    expect(push?.child.running).toBe(true);
    expect((await fetch(`${push?.url}/health`)).status).toBe(200);
    const { client: late } = await connect('late');
    await postMessages(cluster, { to: late.userId, payload: 'hello' });
    expect((await late.waitForMessages(1))[0]?.payload).toBe('hello');
  });
});
