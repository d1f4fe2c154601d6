// The bench's bare-socket WebSocket client against a real `ws` server on loopback: the
// capacity figures are only as good as the client that opens the connections.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { LeanWebSocket, UpgradeRefused } from '../../bench/lib/lean-websocket.js';

let server: Server;
let base: string;
/** What the server got from each client, by the `name` in its query. */
const heard = new Map<string, string[]>();
const pongs = new Map<string, number>();
const closes = new Map<string, number>();

beforeAll(async () => {
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server = createServer();
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.searchParams.get('token') !== 'good') {
      const body = '{"error":{"code":"expired"}}';
      socket.end(
        'HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const name = url.searchParams.get('name') ?? '';
      heard.set(name, []);
      ws.on('message', (data) => {
        const text = data.toString();
        heard.get(name)?.push(text);
        if (text === 'fragments') {
          ws.send('one ', { fin: false });
          ws.send('two ', { fin: false });
          ws.send('three', { fin: true });
        } else if (text === 'big') ws.send('x'.repeat(70_000));
        else if (text === 'ping') ws.ping('p');
        else if (text === 'close') ws.close(4321, 'bye');
        else ws.send(`echo ${text}`);
      });
      ws.on('pong', () => pongs.set(name, (pongs.get(name) ?? 0) + 1));
      ws.on('close', (code) => closes.set(name, code));
      // Sent with the 101: the client must not lose a frame that shares its chunk.
      ws.send('hello');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws?token=`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function open(name: string, token = 'good') {
  const messages: string[] = [];
  let closed = 0;
  const opening = LeanWebSocket.open(`${base}${token}&name=${name}`, {
    timeoutMs: 5000,
    onMessage: (_ws, text) => messages.push(text),
    onClose: () => closed++,
  });
  return { opening, messages, closedCount: () => closed };
}

const until = async (ok: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(ok()).toBe(true);
};

describe('the bench lean WebSocket client', () => {
  it('opens, gets the frame sent with the 101, and its masked frames reach a ws server', async () => {
    const c = open('a');
    const ws = await c.opening;
    await until(() => c.messages.length >= 1);
    expect(c.messages[0]).toBe('hello');
    ws.send('é'.repeat(200)); // 400 bytes: the 16-bit length form
    await until(() => c.messages.length >= 2);
    expect(c.messages[1]).toBe(`echo ${'é'.repeat(200)}`);
    expect(heard.get('a')).toEqual(['é'.repeat(200)]);
    ws.terminate();
  });

  it('joins fragments, reads a 64-bit-length frame and answers pings', async () => {
    const c = open('b');
    const ws = await c.opening;
    ws.send('fragments');
    ws.send('big');
    ws.send('ping');
    await until(() => c.messages.length >= 3 && pongs.get('b') === 1);
    expect(c.messages.slice(1, 3)).toEqual(['one two three', 'x'.repeat(70_000)]);
    ws.terminate();
  });

  it('answers the close handshake with the code the server sent', async () => {
    const c = open('c');
    const ws = await c.opening;
    ws.send('close');
    await until(() => closes.get('c') !== undefined && c.closedCount() === 1);
    expect(closes.get('c')).toBe(4321);
    expect(ws.isOpen).toBe(false);
  });

  it('rejects a refused handshake with its status and body', async () => {
    const err = await open('d', 'bad').opening.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpgradeRefused);
    expect((err as UpgradeRefused).status).toBe(401);
    expect((err as UpgradeRefused).body).toContain('expired');
  });
});
