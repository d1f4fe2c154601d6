import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  PushClient,
  type PushMessage,
  type WebSocketConstructor,
} from '../../src/client/push-client.js';
import { waitFor } from '../../src/launcher/child.js';
import { CloseCode } from '../../src/protocol/frames.js';

// The client library against a small stand-in for dispatch and a push node on loopback,
// so each behaviour (dedupe, acks, reconnects) can be provoked exactly.
interface Node {
  server: Server;
  wss: WebSocketServer;
  port: number;
  sockets: WebSocket[];
  acks: string[];
  connects: number;
  tokens: string[];
}

const nodes: Node[] = [];
const clients: PushClient[] = [];

async function startNode(): Promise<Node> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: `ws://127.0.0.1:${node.port}/ws` }));
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  const node: Node = { server, wss, port: 0, sockets: [], acks: [], connects: 0, tokens: [] };
  wss.on('connection', (ws, req) => {
    node.connects++;
    node.tokens.push(new URL(req.url ?? '', 'http://x').searchParams.get('token') ?? '');
    node.sockets.push(ws);
    ws.on('message', (d) => node.acks.push((JSON.parse(d.toString()) as { id: string }).id));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  node.port = (server.address() as AddressInfo).port;
  nodes.push(node);
  return node;
}

function clientOf(
  node: Node,
  tokens: string[] = ['t'],
): { client: PushClient; got: PushMessage[]; dups: string[] } {
  let n = 0;
  const client = new PushClient({
    connectUrl: `http://127.0.0.1:${node.port}/v1/connect`,
    getToken: () => tokens[Math.min(n++, tokens.length - 1)] as string,
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    backoff: { initialMs: 50, maxMs: 200 },
  });
  const got: PushMessage[] = [];
  const dups: string[] = [];
  client.on('message', (m) => got.push(m));
  client.on('duplicate', (id) => dups.push(id));
  clients.push(client);
  return { client, got, dups };
}

const frame = (id: string, payload: unknown): string =>
  JSON.stringify({ type: 'message', id, payload, createdAt: new Date().toISOString() });

afterEach(async () => {
  for (const c of clients.splice(0)) c.stop();
  for (const n of nodes.splice(0)) {
    n.wss.close();
    n.server.closeAllConnections();
    await new Promise((r) => n.server.close(r));
  }
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
    node.wss.close();
    node.server.closeAllConnections();
    await new Promise((r) => node.server.close(r));
    nodes.splice(nodes.indexOf(node), 1);
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
    nodes.push({ server, wss, port, sockets: [], acks: [], connects: 0, tokens: [] });
    await waitFor('the client to open', () => client.connectionState === 'open', 5000);
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
});
