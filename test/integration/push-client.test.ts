import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  PushClient,
  type PushClientOptions,
  type PushMessage,
  type WebSocketConstructor,
} from '../../src/client/push-client.js';
import { waitFor } from '../../src/launcher/child.js';
import { CloseCode, PONG_FRAME, type ClientFrame } from '../../src/protocol/frames.js';

// The client library against a small stand-in for dispatch and a push node on loopback,
// so each behaviour (dedupe, acks, reconnects) can be provoked exactly.
interface Node {
  server: Server;
  wss: WebSocketServer;
  port: number;
  sockets: WebSocket[];
  acks: string[];
  /** Heartbeat pings received; answered with a pong unless `answerPings` is false. */
  pings: number;
  answerPings: boolean;
  connects: number;
  tokens: string[];
}

const nodes: Node[] = [];
const clients: PushClient[] = [];

/** A node whose /v1/connect hands out its own /ws, unless `connect` answers the request
 *  itself (it returns true then). */
async function startNode(
  connect?: (req: IncomingMessage, res: ServerResponse, nth: number) => boolean,
): Promise<Node> {
  let requests = 0;
  const server = createServer((req, res) => {
    if (connect?.(req, res, ++requests)) return;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: `ws://127.0.0.1:${node.port}/ws` }));
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  const node: Node = {
    ...{ server, wss, port: 0, sockets: [], acks: [], pings: 0, answerPings: true },
    ...{ connects: 0, tokens: [] },
  };
  wss.on('connection', (ws, req) => {
    node.connects++;
    node.tokens.push(new URL(req.url ?? '', 'http://x').searchParams.get('token') ?? '');
    node.sockets.push(ws);
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as ClientFrame;
      if (f.type === 'ack') node.acks.push(f.id);
      else if (f.type === 'ping') {
        node.pings++;
        if (node.answerPings) ws.send(PONG_FRAME);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  node.port = (server.address() as AddressInfo).port;
  nodes.push(node);
  return node;
}

function clientOf(
  node: Node,
  tokens: string[] = ['t'],
  options: Partial<PushClientOptions> = {},
): { client: PushClient; got: PushMessage[]; dups: string[]; errors: string[] } {
  let n = 0;
  const client = new PushClient({
    connectUrl: `http://127.0.0.1:${node.port}/v1/connect`,
    getToken: () => tokens[Math.min(n++, tokens.length - 1)] as string,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { initialMs: 50, maxMs: 200 },
    ...options,
  });
  const got: PushMessage[] = [];
  const dups: string[] = [];
  const errors: string[] = [];
  client.on('message', (m) => void got.push(m));
  client.on('duplicate', (id) => dups.push(id));
  client.on('error', (e) => errors.push(e.message));
  clients.push(client);
  return { client, got, dups, errors };
}

const frame = (id: string, payload: unknown): string =>
  JSON.stringify({ type: 'message', id, payload, createdAt: new Date().toISOString() });

/** A node whose /v1/connect hands out its own /ws and names `fallbacks`; `asked` counts the
 *  /v1/connect requests it answered. */
async function startNodeNaming(fallbacks: unknown[]): Promise<{ node: Node; asked: () => number }> {
  let asked = 0;
  const node = await startNode((_req, res) => {
    asked++;
    res.end(JSON.stringify({ url: `ws://127.0.0.1:${node.port}/ws`, fallbacks }));
    return true;
  });
  return { node, asked: () => asked };
}

/** Stops a node: its port refuses connections from now on. */
async function stopNode(n: Node): Promise<void> {
  n.wss.close();
  n.server.closeAllConnections();
  await new Promise((r) => n.server.close(r));
  if (nodes.includes(n)) nodes.splice(nodes.indexOf(n), 1);
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.stop();
  for (const n of [...nodes]) await stopNode(n);
});

describe('PushClient', () => {
  it('connects through /v1/connect, delivers messages once, and acks every copy', async () => {
    const node = await startNode();
    const { client, got, dups } = clientOf(node);
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const ws = node.sockets[0]!;
    ws.send(frame('m1', { text: 'héllo' }));
    ws.send(frame('m2', 2));
    ws.send(frame('m1', { text: 'héllo' }));
    await waitFor('three acks', () => node.acks.length === 3);
    expect(got.map((m) => [m.id, m.payload])).toEqual([
      ['m1', { text: 'héllo' }],
      ['m2', 2],
    ]);
    expect(dups).toEqual(['m1']);
    expect(node.acks).toEqual(['m1', 'm2', 'm1']);
  });

  it('reconnects at once when its node restarts (close 1012), with a fresh token', async () => {
    const node = await startNode();
    const { client } = clientOf(node, ['first', 'second']);
    const states: string[] = [];
    client.on('state', (s) => states.push(s));
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const closedAt = performance.now();
    node.sockets[0]!.close(CloseCode.ServiceRestart, 'restart');
    await waitFor('a second connection', () => node.connects === 2, 2000, 5);
    expect(performance.now() - closedAt).toBeLessThan(1000);
    expect(node.tokens).toEqual(['first', 'second']);
    await waitFor('open again', () => client.connectionState === 'open');
    expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
  });

  it('keeps retrying with backoff while no node can be reached, and connects once one can', async () => {
    const node = await startNode();
    const port = node.port;
    await stopNode(node);
    const { client } = clientOf(node);
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    client.start();
    await waitFor('a few failed attempts', () => errors.length >= 3, 5000);
    expect(client.connectionState).toBe('reconnecting');
    // Bring a node up on the very port the client keeps trying.
    const server = createServer((req, res) =>
      res.end(JSON.stringify({ url: `ws://127.0.0.1:${port}/ws` })),
    );
    const wss = new WebSocketServer({ server, path: '/ws' });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    nodes.push({
      ...{ server, wss, port, sockets: [], acks: [], pings: 0, answerPings: true },
      ...{ connects: 0, tokens: [] },
    });
    await waitFor('the client to open', () => client.connectionState === 'open', 5000);
  });

  it('after losing an open socket, goes straight to a fallback /v1/connect named, without asking again', async () => {
    const other = await startNode();
    const { node, asked } = await startNodeNaming([
      `ws://127.0.0.1:${other.port}/ws`,
      'not a url',
      42,
    ]);
    const { client } = clientOf(node);
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    node.sockets[0]!.terminate(); // the node is lost: no closing handshake
    await waitFor('the client on the fallback', () => other.connects === 1, 5000);
    await waitFor('open again', () => client.connectionState === 'open');
    expect(client.nodeUrl).toBe(`ws://127.0.0.1:${other.port}/ws`);
    expect(asked()).toBe(1);
  });

  it('asks /v1/connect again when the fallback it tried refuses it', async () => {
    const gone = await startNode();
    const gonePort = gone.port;
    await stopNode(gone);
    const { node, asked } = await startNodeNaming([`ws://127.0.0.1:${gonePort}/ws`]);
    const { client, errors } = clientOf(node);
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    node.sockets[0]!.terminate();
    await waitFor('a second connection to the node', () => node.connects === 2, 5000);
    expect(asked()).toBe(2);
    expect(errors).toEqual([`connection to ws://127.0.0.1:${gonePort}/ws failed (close 1006)`]);
    // The fallback that refused was dropped: the next loss asks /v1/connect's new list.
    await waitFor('open again', () => client.connectionState === 'open');
  });

  it('spreads the clients of a lost node over its fallbacks, at random', async () => {
    const [b, c] = [await startNode(), await startNode()];
    const { node } = await startNodeNaming([
      `ws://127.0.0.1:${b.port}/ws`,
      `ws://127.0.0.1:${c.port}/ws`,
    ]);
    const many = Array.from({ length: 40 }, () => clientOf(node).client);
    for (const client of many) client.start();
    await waitFor('every client open', () => node.connects === 40, 5000);
    for (const ws of node.sockets) ws.terminate();
    await waitFor('every client on a fallback', () => b.connects + c.connects === 40, 5000);
    // Each of the 40 picks one of two at random: fewer than 8 on either is a 1-in-10^4 event.
    expect(Math.min(b.connects, c.connects)).toBeGreaterThanOrEqual(8);
  });

  it('stops for good on stop(): no reconnect afterwards', async () => {
    const node = await startNode();
    const { client } = clientOf(node);
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    client.stop();
    await waitFor(
      'the server to see the close',
      () => node.sockets[0]!.readyState === WebSocket.CLOSED,
    );
    expect(client.connectionState).toBe('closed');
    expect(node.connects).toBe(1);
  });

  it('acks a message only once its listeners succeeded: a throwing listener leaves it to its redelivery', async () => {
    const node = await startNode();
    const { client, got, dups, errors } = clientOf(node);
    let failNext = true;
    client.on('message', () => {
      if (failNext) {
        failNext = false;
        throw new Error('database down');
      }
    });
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const ws = node.sockets[0]!;
    ws.send(frame('m1', 1));
    ws.send(frame('m2', 2));
    await waitFor('the ack of m2', () => node.acks.includes('m2'));
    expect(node.acks).toEqual(['m2']); // acks keep their order on the socket: m1 had none
    expect(errors).toEqual(['a message listener failed on m1, left unacked: database down']);
    ws.send(frame('m1', 1)); // the redelivery: processed again, not dropped as a duplicate
    await waitFor('the ack of m1', () => node.acks.includes('m1'));
    expect(node.acks).toEqual(['m2', 'm1']);
    expect(dups).toEqual([]);
    // The recording listener ran every time; the message counts as processed once.
    expect(got.map((m) => m.id)).toEqual(['m1', 'm2', 'm1']);
  });

  it('acks after the promise a listener returns resolves, and not when it rejects', async () => {
    const node = await startNode();
    const { client, errors } = clientOf(node);
    const settle = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
    client.on('message', (m) =>
      m.id === 'sync'
        ? undefined
        : new Promise<void>((resolve, reject) => settle.set(m.id, { resolve, reject })),
    );
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const ws = node.sockets[0]!;
    ws.send(frame('slow', 1));
    ws.send(frame('failing', 2));
    ws.send(frame('slow', 1)); // a copy while the first is still being processed: dropped
    ws.send(frame('sync', 3));
    await waitFor('the ack of sync', () => node.acks.includes('sync'));
    expect(node.acks).toEqual(['sync']);
    settle.get('failing')!.reject(new Error('nope'));
    settle.get('slow')!.resolve();
    await waitFor('the ack of slow', () => node.acks.includes('slow'));
    expect(node.acks).toEqual(['sync', 'slow']);
    expect(errors).toEqual(['a message listener failed on failing, left unacked: nope']);
    settle.delete('failing');
    ws.send(frame('failing', 2)); // redelivered: its listener runs again
    await waitFor('the listener to run on the redelivery', () => settle.has('failing'));
    settle.get('failing')!.resolve();
    await waitFor('the ack of failing', () => node.acks.includes('failing'));
    expect(node.acks).toEqual(['sync', 'slow', 'failing']);
  });

  it('with autoAck: false, acks only what the app acked, and acks its redeliveries again', async () => {
    const node = await startNode();
    const { client, got, dups } = clientOf(node, ['t'], { autoAck: false });
    client.on('message', (m) => {
      if (m.id === 'in-listener') client.ack(m.id);
    });
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const ws = node.sockets[0]!;
    ws.send(frame('later', 1));
    ws.send(frame('never', 2));
    ws.send(frame('in-listener', 3));
    await waitFor('the ack of in-listener', () => node.acks.length > 0);
    expect(node.acks).toEqual(['in-listener']);
    client.ack('later');
    await waitFor('the ack of later', () => node.acks.length > 1);
    // Redeliveries (the acks were lost, say): acked again by the client if the app acked them.
    for (const id of ['never', 'later', 'in-listener', 'never']) ws.send(frame(id, 0));
    ws.send(frame('last', 4));
    await waitFor('last to arrive', () => got.some((m) => m.id === 'last'));
    await waitFor('the acks of the redeliveries', () => node.acks.length >= 4);
    expect(node.acks).toEqual(['in-listener', 'later', 'later', 'in-listener']);
    expect(dups).toEqual(['never', 'later', 'in-listener', 'never']);
    expect(got.map((m) => m.id)).toEqual(['later', 'never', 'in-listener', 'last']);
  });

  it('pings its node every heartbeat interval and stays connected while pongs come back', async () => {
    const node = await startNode();
    const { client, errors } = clientOf(node, ['t'], { heartbeatIntervalMs: 100 });
    client.start();
    await waitFor('five pings', () => node.pings >= 5, 5000, 10);
    expect(node.connects).toBe(1);
    expect(client.connectionState).toBe('open');
    expect(errors).toEqual([]);
  });

  it('drops a connection that goes silent after about two heartbeat intervals and reconnects', async () => {
    const node = await startNode();
    const { client, errors } = clientOf(node, ['t'], { heartbeatIntervalMs: 200 });
    const states: string[] = [];
    client.on('state', (s) => states.push(s));
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    node.answerPings = false; // a hung node: the TCP connection stays, nothing comes back
    const silentFrom = performance.now();
    await waitFor('a second connection', () => node.connects === 2, 5000, 5);
    const detectedAfter = performance.now() - silentFrom;
    expect(detectedAfter).toBeLessThan(2 * 200 + 500);
    expect(errors[0]).toMatch(
      /^no frame from ws:\/\/127\.0\.0\.1:\d+\/ws within 200 ms of a ping: reconnecting$/,
    );
    await waitFor(
      'the dropped socket to be closed',
      () => node.sockets[0]!.readyState === WebSocket.CLOSED,
    );
    await waitFor('open again', () => client.connectionState === 'open');
    expect(states).toEqual(['connecting', 'open', 'reconnecting', 'open']);
  });

  it('abandons an opening handshake that never completes and connects elsewhere', async () => {
    // A TCP server that accepts and never answers the upgrade request: a hung node.
    const hung: Socket[] = [];
    let closedByClient = 0;
    const blackHole = createTcpServer((socket) => {
      hung.push(socket);
      socket.on('close', () => closedByClient++).on('error', () => undefined);
      socket.resume(); // read the upgrade request, never answer it
    });
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', () => r()));
    const holePort = (blackHole.address() as AddressInfo).port;
    try {
      const node = await startNode((_req, res, nth) => {
        if (nth > 1) return false;
        res.end(JSON.stringify({ url: `ws://127.0.0.1:${holePort}/ws` }));
        return true;
      });
      const { client, errors } = clientOf(node, ['t'], { connectTimeoutMs: 300 });
      const startedAt = performance.now();
      client.start();
      await waitFor('the client to open on the good node', () => node.connects === 1, 5000);
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(300);
      expect(errors).toEqual([
        `connection to ws://127.0.0.1:${holePort}/ws did not open within 300 ms`,
      ]);
      await waitFor('the client to close the hung TCP connection', () => closedByClient === 1);
      expect(hung).toHaveLength(1);
    } finally {
      for (const s of hung) s.destroy();
      await new Promise((r) => blackHole.close(r));
    }
  });

  it('gives up on a /v1/connect request that does not answer, and asks again', async () => {
    const unanswered: ServerResponse[] = [];
    const node = await startNode((_req, res, nth) => {
      if (nth > 1) return false;
      unanswered.push(res);
      return true;
    });
    const { client, errors } = clientOf(node, ['t'], { connectTimeoutMs: 300 });
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open', 5000);
    expect(errors).toEqual(['connect endpoint did not answer within 300 ms']);
    expect(unanswered).toHaveLength(1);
    await waitFor('the abandoned request to be closed', () => unanswered[0]!.closed);
  });

  it('stop() and start() during a /v1/connect request: the old attempt opens nothing', async () => {
    const held: ServerResponse[] = [];
    const node = await startNode((_req, res, nth) => {
      if (nth > 1) return false;
      held.push(res); // answered only after the client restarted
      return true;
    });
    const { client } = clientOf(node);
    client.start();
    await waitFor('the first /v1/connect request', () => held.length === 1);
    client.stop();
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    // The first request was aborted by stop(): answering it now reaches no one.
    await waitFor('the first request to be closed', () => held[0]!.closed);
    held[0]!.end(JSON.stringify({ url: `ws://127.0.0.1:${node.port}/ws` }));
    expect(node.connects).toBe(1);
    expect(node.sockets.filter((s) => s.readyState === WebSocket.OPEN)).toHaveLength(1);
  });

  it('stop() during a /v1/connect request ends it: no socket is opened afterwards', async () => {
    const held: ServerResponse[] = [];
    const node = await startNode((_req, res) => {
      held.push(res);
      return true;
    });
    const { client } = clientOf(node);
    client.start();
    await waitFor('the /v1/connect request', () => held.length === 1);
    client.stop();
    await waitFor('the request to be closed', () => held[0]!.closed);
    expect(client.connectionState).toBe('closed');
    expect(node.connects).toBe(0);
  });

  it('remembers the last dedupeWindow ids: an older one is processed again', async () => {
    const node = await startNode();
    const { client, got, dups } = clientOf(node, ['t'], { dedupeWindow: 2 });
    client.start();
    await waitFor('the client to open', () => client.connectionState === 'open');
    const ws = node.sockets[0]!;
    for (const id of ['a', 'b', 'b', 'c', 'b', 'a']) ws.send(frame(id, id));
    await waitFor('six acks', () => node.acks.length === 6);
    expect(got.map((m) => m.id)).toEqual(['a', 'b', 'c', 'a']);
    expect(dups).toEqual(['b', 'b']);
  });
});
