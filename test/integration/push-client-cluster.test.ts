import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  PushClient,
  type PushClientOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from '../../src/client/push-client.js';
import { waitFor } from '../../src/launcher/child.js';
import { startCluster, type ServiceProc, type TestCluster } from '../support/cluster.js';
import { messageStatus, mintToken, postMessages } from '../support/clients.js';

// The client library against a real cluster (Consul, Redis, auth, collect, dispatch, two
// push nodes): redelivery after a failed listener, restarts during a connect, a hung node.
let cluster: TestCluster;
const clients: PushClient[] = [];

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 2, env: { ACK_TIMEOUT: '1s' } });
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
}, 60_000);

afterEach(() => {
  for (const c of clients.splice(0)) c.stop();
});

/** A client of `userId` through the cluster's dispatch; `sockets` records every socket it makes. */
function clientFor(
  userId: string,
  options: Partial<PushClientOptions> = {},
  onSocket?: (socket: WebSocketLike) => void,
): { client: PushClient; sockets: WebSocketLike[]; errors: string[] } {
  const sockets: WebSocketLike[] = [];
  const Recording = class extends WebSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this as unknown as WebSocketLike);
      onSocket?.(this as unknown as WebSocketLike);
    }
  };
  const client = new PushClient({
    connectUrl: `${cluster.dispatch.url}/v1/connect`,
    getToken: () => mintToken(cluster, userId),
    WebSocket: Recording as unknown as WebSocketConstructor,
    backoff: { initialMs: 50, maxMs: 500 },
    ...options,
  });
  const errors: string[] = [];
  client.on('error', (e) => errors.push(e.message));
  clients.push(client);
  return { client, sockets, errors };
}

/** Open sockets on all push nodes, as their push_connections gauges say. */
async function serverConnections(): Promise<number> {
  let total = 0;
  for (const node of cluster.push) {
    const text = await (await fetch(`${node.url}/metrics`)).text();
    const match = /^push_connections(?:\{[^}]*\})? (\d+)$/m.exec(text);
    if (!match) throw new Error(`no push_connections on ${node.id}`);
    total += Number(match[1]);
  }
  return total;
}

/** Waits until no socket of the client is still opening, then expects exactly one open:
 *  on the client, and on the push nodes. */
async function expectOneOpenSocket(client: PushClient, sockets: WebSocketLike[]): Promise<void> {
  await waitFor('the client to open', () => client.connectionState === 'open');
  await waitFor('every socket the client made to open or close', () =>
    sockets.every((s) => s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CLOSED),
  );
  expect(sockets.filter((s) => s.readyState === WebSocket.OPEN)).toHaveLength(1);
  // A leaked socket stays open on its node: the count would stay at 2.
  await waitFor(
    'exactly one socket on the push nodes',
    async () => (await serverConnections()) === 1,
  );
}

const nodeOf = (url: string | undefined): ServiceProc => {
  const node = cluster.push.find((p) => url === `ws://127.0.0.1:${p.port}/ws`);
  if (!node) throw new Error(`${url} is none of the cluster's push nodes`);
  return node;
};

describe('PushClient on a real cluster', () => {
  it('leaves a message whose listener threw unacked; its redelivery is processed and acked', async () => {
    const { client, errors } = clientFor('listener-fails');
    const processed: string[] = [];
    let calls = 0;
    client.on('message', (m) => {
      if (++calls === 1) throw new Error('handler crashed');
      processed.push(m.id);
    });
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const [id] = await postMessages(cluster, { to: 'listener-fails', payload: { n: 1 } });
    await waitFor('the listener to fail', () => errors.length > 0);
    expect(errors[0]).toBe(`a message listener failed on ${id}, left unacked: handler crashed`);
    // Not acked. (Not waited for as `delivered`: with ACK_TIMEOUT at 1 s, as long as the
    // delivered mark's delay, the mark is written already due, and the redelivery and its
    // ack may follow within one poll.)
    expect(await messageStatus(cluster, id as string)).not.toBe('acked');
    // ACK_TIMEOUT is 1 s: collect pushes it again, and this time the listener succeeds.
    await waitFor('the redelivery to be processed', () => processed.length > 0, 10_000);
    expect(processed).toEqual([id]);
    await waitFor(
      'the message to be acked',
      async () => (await messageStatus(cluster, id as string)) === 'acked',
    );
    expect(calls).toBe(2);
  });

  it('stop() and start() while the first attempt awaits its token leave exactly one socket', async () => {
    let first = true;
    const { client, sockets } = clientFor('restarts-in-token', {
      getToken: async () => {
        if (first) {
          first = false;
          client.stop();
          client.start();
        }
        return mintToken(cluster, 'restarts-in-token');
      },
    });
    client.start();
    await expectOneOpenSocket(client, sockets);
    expect(sockets).toHaveLength(1);
  });

  it('stop() and start() while a socket is opening close it: exactly one socket stays', async () => {
    let opening: number | undefined;
    const { client, sockets } = clientFor('restarts-in-handshake', {}, (socket) => {
      if (sockets.length > 1) return;
      // Right after the first socket is made, while its opening handshake runs.
      queueMicrotask(() => {
        opening = socket.readyState;
        client.stop();
        client.start();
      });
    });
    client.start();
    await expectOneOpenSocket(client, sockets);
    expect(opening).toBe(WebSocket.CONNECTING);
    expect(sockets).toHaveLength(2);
    expect(sockets[0]!.readyState).toBe(WebSocket.CLOSED);
  });

  // Last: it stops a push node for a while.
  it('moves to the other push node within about two heartbeat intervals when its node hangs (SIGSTOP)', async () => {
    const heartbeatMs = 1000;
    const { client, errors } = clientFor('node-hangs', {
      heartbeatIntervalMs: heartbeatMs,
      connectTimeoutMs: 1000,
    });
    const got: string[] = [];
    client.on('message', (m) => void got.push(m.id));
    const states: { state: string; at: number }[] = [];
    client.on('state', (state) => states.push({ state, at: performance.now() }));
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const hung = nodeOf(client.nodeUrl);
    const other = cluster.push.find((p) => p !== hung)!;
    const pid = hung.child.pid!;
    process.kill(pid, 'SIGSTOP');
    const stoppedAt = performance.now();
    try {
      await waitFor(
        'the client to leave the hung node',
        () => states.at(-1)?.state === 'reconnecting',
        10_000,
        10,
      );
      const detectedAfter = states.at(-1)!.at - stoppedAt;
      expect(detectedAfter).toBeLessThanOrEqual(2 * heartbeatMs + 500);
      expect(errors[0]).toMatch(/^no frame from ws:.* within 1000 ms of a ping: reconnecting$/);
      await waitFor(
        'the client to open on the other node',
        () =>
          client.connectionState === 'open' && client.nodeUrl === `ws://127.0.0.1:${other.port}/ws`,
        20_000,
      );
      // While the hung node is still stopped, the user's messages reach the client.
      const [id] = await postMessages(cluster, { to: 'node-hangs', payload: 'after the move' });
      await waitFor('the message on the other node', () => got.includes(id as string), 10_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('moves to its fallback node while dispatch is unreachable too (both SIGSTOPped)', async () => {
    // Both nodes passing again (the test before stopped one), so that /v1/connect names the
    // other as the fallback: with one node out of the passing set, it names none.
    await waitFor(
      'a /v1/connect answer naming a fallback',
      async () => {
        const res = await fetch(`${cluster.dispatch.url}/v1/connect`);
        return ((await res.json()) as { fallbacks?: string[] }).fallbacks?.length === 1;
      },
      30_000,
    );
    const heartbeatMs = 1000;
    const { client, errors } = clientFor('node-and-dispatch-hang', {
      heartbeatIntervalMs: heartbeatMs,
    });
    const got: string[] = [];
    client.on('message', (m) => void got.push(m.id));
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const hung = nodeOf(client.nodeUrl);
    const other = cluster.push.find((p) => p !== hung)!;
    const stopped = [hung.child.pid!, cluster.dispatch.child.pid!];
    for (const pid of stopped) process.kill(pid, 'SIGSTOP');
    try {
      // /v1/connect cannot answer: only the fallback its first answer named gets it there.
      await waitFor(
        'the client to open on the other node',
        () =>
          client.connectionState === 'open' && client.nodeUrl === `ws://127.0.0.1:${other.port}/ws`,
        20_000,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; the client's errors: ${errors.join('; ')}`);
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
    }
    const [id] = await postMessages(cluster, { to: 'node-and-dispatch-hang', payload: 'moved' });
    await waitFor('the message on the other node', () => got.includes(id as string), 20_000);
  });
});
