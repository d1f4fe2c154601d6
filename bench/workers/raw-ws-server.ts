// The ceiling: one bare `ws` server process, no cluster. It takes the same batch POST as
// collect (`{"messages":[{"to","payload"}]}`) and writes each message, as the same frame a
// push node sends (`{"type":"message","id","payload","createdAt"}`), to the sockets of its
// user (`/ws?user=<id>`). Clients ack as they do with push-cluster; acks are parsed and counted.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monotonicFactory } from 'ulid';
import { WebSocketServer, type WebSocket } from 'ws';
import { serve } from '../lib/ipc.js';

const users = new Map<string, Set<WebSocket>>();
const newId = monotonicFactory();
let acks = 0;
let pushed = 0;

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  clientTracking: false,
});

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'POST' || req.url !== '/v1/messages') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let body: { messages: { to: string | string[]; payload: unknown }[] };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
    } catch {
      res.writeHead(400).end();
      return;
    }
    const now = new Date();
    const createdAt = now.toISOString();
    const ids: string[] = [];
    for (const m of body.messages) {
      for (const to of Array.isArray(m.to) ? m.to : [m.to]) {
        const id = newId(now.getTime());
        ids.push(id);
        const conns = users.get(to);
        if (!conns) continue;
        const frame = JSON.stringify({ type: 'message', id, payload: m.payload, createdAt });
        for (const ws of conns) {
          ws.send(frame);
          pushed++;
        }
      }
    }
    const out = JSON.stringify({ ids });
    res.writeHead(202, { 'content-type': 'application/json' }).end(out);
  });
}

const server = createServer(handle);
server.keepAliveTimeout = 65_000;
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const user = url.searchParams.get('user');
  if (url.pathname !== '/ws' || !user) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    let set = users.get(user);
    if (!set) users.set(user, (set = new Set()));
    set.add(ws);
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { type?: string };
      if (frame.type === 'ack') acks++;
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      set.delete(ws);
      if (set.size === 0) users.delete(user);
    });
  });
});

serve({
  listen: () =>
    new Promise<{ port: number }>((resolve) =>
      server.listen(0, '127.0.0.1', () =>
        resolve({ port: (server.address() as AddressInfo).port }),
      ),
    ),
  counts: () => ({ acks, pushed, users: users.size }),
});
