import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROJECT_ROOT } from '../launcher/binaries.js';

/** The compiled client library is served from dist/, whether this runs from src or dist. */
const DIST = join(PROJECT_ROOT, 'dist');
const PAGE = fileURLToPath(new URL('./index.html', import.meta.url));

export interface DemoServerOptions {
  authUrl: string;
  collectUrl: string;
  dispatchUrl: string;
  adminKey: string;
  ingestKey: string;
}

/**
 * The development demo page, built on the client library. The page never sees a key:
 * it asks this server for a token and to send, and this server calls auth and collect
 * with the development keys. Not for production: anyone reaching it can mint tokens.
 */
export function createDemoServer(o: DemoServerOptions): Server {
  return createServer((req, res) => {
    handle(req, res).catch((err: unknown) =>
      json(res, 500, { error: { code: 'internal', message: String(err) } }),
    );
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'GET' && (path === '/' || path === '/index.html')) {
      const page = await readFile(PAGE);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
      return;
    }
    if (req.method === 'GET' && path.startsWith('/js/')) {
      // Only the browser-safe modules: the client library and the protocol it imports.
      const rel = normalize(path.slice('/js/'.length));
      if (
        ![
          'client/push-client.js',
          'client/client-options.js',
          'client/dedupe-window.js',
          'client/fallbacks.js',
          'protocol/frames.js',
        ].includes(rel)
      )
        return json(res, 404, notFound(path));
      const code = await readFile(join(DIST, rel));
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      res.end(code);
      return;
    }
    if (req.method === 'GET' && path === '/connect')
      return relay(res, await fetch(`${o.dispatchUrl}/v1/connect`));
    if (req.method === 'POST' && path === '/token') {
      return relay(res, await fetch(`${o.authUrl}/v1/tokens`, post(await body(req), o.adminKey)));
    }
    if (req.method === 'POST' && path === '/send') {
      return relay(
        res,
        await fetch(`${o.collectUrl}/v1/messages`, post(await body(req), o.ingestKey)),
      );
    }
    json(res, 404, notFound(path));
  }
}

const notFound = (path: string) => ({ error: { code: 'not_found', message: `no ${path} here` } });

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function relay(res: ServerResponse, upstream: Response): Promise<void> {
  res.writeHead(upstream.status, { 'content-type': 'application/json' });
  res.end(await upstream.text());
}

function post(bodyText: string, key: string): RequestInit {
  return {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: bodyText,
  };
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) {
    text += String(chunk);
    if (text.length > 64 * 1024) throw new Error('body too large');
  }
  return text;
}
