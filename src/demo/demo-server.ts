import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import getRawBody from 'raw-body';
import { errorBody, HttpError, isCanonicalTarget } from '../core/http.js';
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
 *
 * It listens on loopback, but the browser of the developer running it also visits other
 * sites, so it answers only its own page: a request must name this server in `Host` (a
 * site whose DNS name turns to 127.0.0.1, DNS rebinding, is refused), and a POST must come
 * from this server's origin and say it is JSON (a form or a `fetch` of another site, which
 * a browser sends without asking, is refused before any key is used).
 */
export function createDemoServer(o: DemoServerOptions): Server {
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return json(res, err.status, errorBody(err.code, err.message));
      json(res, 500, errorBody('internal', String(err)));
    });
  });
  return server;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    checkHost(req, server);
    // A target spelled any way but the canonical one (`//host:x` throws in `new URL`) is 404.
    if (!isCanonicalTarget(req.url)) return json(res, 404, notFound(req.url ?? ''));
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'POST') checkSameOrigin(req);
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
      return relay(res, `${o.dispatchUrl}/v1/connect`);
    if (req.method === 'POST' && path === '/token')
      return relay(res, `${o.authUrl}/v1/tokens`, post(await body(req), o.adminKey));
    if (req.method === 'POST' && path === '/send')
      return relay(res, `${o.collectUrl}/v1/messages`, post(await body(req), o.ingestKey));
    json(res, 404, notFound(path));
  }
}

/** The most a POST body may hold (a token request or a message from the page). */
const MAX_BODY_BYTES = 64 * 1024;

const notFound = (path: string) => errorBody('not_found', `no ${path} here`);

/** `Host` must name this server as the page's own address does: 127.0.0.1 or localhost, on
 *  the port it listens on. */
function checkHost(req: IncomingMessage, server: Server): void {
  const { port } = server.address() as AddressInfo;
  const host = (req.headers.host ?? '').toLowerCase();
  if (['127.0.0.1', 'localhost'].some((name) => host === `${name}:${port}`)) return;
  throw new HttpError(
    403,
    'forbidden_host',
    `Host ${JSON.stringify(req.headers.host ?? '')} is not this demo server: open it at ` +
      `http://127.0.0.1:${port}/`,
  );
}

/** A POST must be a `fetch` of the demo page itself: sent from its origin (a browser always
 *  sends `Origin` on a cross-site POST), or by a tool that sends none, as curl; and labelled
 *  JSON, which a browser does not send to another origin without asking first. */
function checkSameOrigin(req: IncomingMessage): void {
  const { origin } = req.headers;
  const site = req.headers['sec-fetch-site'];
  if (
    (origin !== undefined && origin !== `http://${req.headers.host ?? ''}`) ||
    (site !== undefined && site !== 'same-origin' && site !== 'none')
  )
    throw new HttpError(
      403,
      'cross_origin',
      `a POST from ${origin ?? `a ${site} page`} is refused: only the demo page may post here`,
    );
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json')
    throw new HttpError(415, 'unsupported_media_type', 'send the body as application/json');
}

function json(res: ServerResponse, status: number, value: unknown): void {
  if (res.headersSent) return void res.destroy();
  // A refusal may leave a body unread: the connection ends with the answer.
  const close = status >= 400 ? { connection: 'close' } : {};
  res.writeHead(status, { 'content-type': 'application/json', ...close });
  res.end(JSON.stringify(value));
}

/** Passes the cluster's answer on; 502 when the service does not answer at all. */
async function relay(res: ServerResponse, url: string, init?: RequestInit): Promise<void> {
  let status: number;
  let text: string;
  try {
    const upstream = await fetch(url, init);
    status = upstream.status;
    text = await upstream.text();
  } catch (err) {
    throw new HttpError(
      502,
      'upstream_unavailable',
      `${new URL(url).origin} did not answer (${(err as Error).message}): is the cluster running?`,
    );
  }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}

function post(bodyBytes: Buffer, key: string): RequestInit {
  return {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: bodyBytes,
  };
}

/** The body's bytes, passed on as they came (collect checks their UTF-8): a character
 *  split between two reads stays whole. Past MAX_BODY_BYTES it stops reading (the refusal
 *  closes the connection). */
async function body(req: IncomingMessage): Promise<Buffer> {
  try {
    return await getRawBody(req, { limit: MAX_BODY_BYTES });
  } catch (err) {
    if ((err as { type?: string }).type !== 'entity.too.large') throw err;
    throw new HttpError(
      413,
      'payload_too_large',
      `the body is larger than ${MAX_BODY_BYTES} bytes`,
    );
  }
}
