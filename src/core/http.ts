import { LISTEN_BACKLOG } from './tuning.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import Koa, { type Context, type Next } from 'koa';
import getRawBody from 'raw-body';
import type { BodyBudget } from './body-budget.js';
import type { Logger } from './logger.js';
import { INTERNAL_SECRET_HEADER } from '../protocol/hops.js';
import type { ErrorBody } from '../protocol/public-api.js';

/** An error with the HTTP status and the machine-readable code a client gets. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

/** A Koa app whose every error, thrown or not found, answers in the one JSON error shape.
 *  `observe` sees every request once its final status is known. */
export function createApp(log: Logger, observe?: (ctx: Context) => void): Koa {
  const app = new Koa();
  app.proxy = false;
  app.use(async (ctx: Context, next: Next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw notFound(ctx);
    } catch (err) {
      if (err instanceof HttpError) {
        ctx.status = err.status;
        ctx.body = errorBody(err.code, err.message);
      } else {
        log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
        ctx.status = 500;
        ctx.body = errorBody('internal', 'internal error');
      }
    }
    observe?.(ctx);
  });
  // Koa would otherwise print every error to stderr a second time.
  app.silent = true;
  return app;
}

function notFound(ctx: Context): HttpError {
  return new HttpError(404, 'not_found', `no route for ${ctx.method} ${ctx.path}`);
}

/** Path segments as our routes spell them: no encodings, no dot segments, no empty ones. */
const CANONICAL_PATH = /^(\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$|^\/$/;

/**
 * Every route has exactly one spelling. A request whose raw target is spelled any other
 * way (`//`, `/./`, `/../`, a trailing slash, percent-encoding, an absolute URL) is 404
 * before any router sees it, so no router can match a look-alike; routers themselves
 * match case-sensitively and strictly.
 */
export function isCanonicalTarget(rawUrl: string | undefined): boolean {
  const target = rawUrl ?? '';
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  return CANONICAL_PATH.test(path) && !/\/\.\.?(\/|$)/.test(path);
}

export async function canonicalPathOnly(ctx: Context, next: Next): Promise<void> {
  if (!isCanonicalTarget(ctx.req.url)) throw notFound(ctx);
  await next();
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads and parses a JSON body, with the status a client needs for each way it can be wrong;
 *  on a public port, within the service's `budget` of bodies read at once. */
export async function readJson(
  ctx: Context,
  limitBytes: number,
  budget?: BodyBudget,
): Promise<unknown> {
  return (await readJsonText(ctx, limitBytes, budget)).value;
}

/** readJson, with the body's text beside its value. */
export async function readJsonText(
  ctx: Context,
  limitBytes: number,
  budget?: BodyBudget,
): Promise<{ value: unknown; text: string }> {
  // The content type is not checked: `curl -d` sends JSON labelled as a form, and the
  // body must parse as JSON either way. A content coding is: a gzipped body is not text.
  const encoding = ctx.get('content-encoding').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') {
    // RFC 9110 § 15.5.16: a 415 for a content coding says which codings would do.
    ctx.set('Accept-Encoding', 'identity');
    throw new HttpError(
      415,
      'unsupported_encoding',
      `Content-Encoding ${JSON.stringify(encoding)} is not supported: send the body uncompressed`,
    );
  }
  budget?.reserve(ctx, limitBytes);
  let bytes: Buffer;
  try {
    bytes = await getRawBody(ctx.req, {
      limit: limitBytes,
      length: ctx.get('content-length') || undefined,
    });
  } catch (err) {
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') {
      throw new HttpError(413, 'payload_too_large', `the body is larger than ${limitBytes} bytes`);
    }
    if (e.type === 'request.size.invalid' || e.type === 'request.aborted') {
      throw new HttpError(400, 'invalid_body', 'the body ended before its announced length');
    }
    throw new HttpError(400, 'invalid_body', 'the body could not be read');
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new HttpError(400, 'invalid_body', 'the body is not valid UTF-8');
  }
  if (text.length === 0)
    throw new HttpError(400, 'invalid_json', 'the body is empty: send a JSON object');
  try {
    return { value: JSON.parse(text) as unknown, text };
  } catch (err) {
    throw new HttpError(
      400,
      'invalid_json',
      `the body is not valid JSON: ${(err as Error).message}`,
    );
  }
}

/** The bearer token of a request, or undefined. */
export function bearer(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
  return m?.[1];
}

export function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Requires `Authorization: Bearer <key>`. */
export function requireBearer(ctx: Context, key: string, what: string): void {
  if (!sameSecret(bearer(ctx.get('authorization') || undefined), key)) {
    throw new HttpError(
      401,
      'unauthorized',
      `a valid ${what} is required as "Authorization: Bearer <key>"`,
    );
  }
}

/** Runs first on every internal route: only peers holding INTERNAL_SECRET get further. */
export function requireInternalSecret(secret: string) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (!sameSecret(ctx.get(INTERNAL_SECRET_HEADER) || undefined, secret)) {
      throw new HttpError(401, 'unauthorized', 'internal route: peers only');
    }
    await next();
  };
}

export async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Listens and resolves with the bound port (useful with port 0). */
export async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** A server with no handler yet: Koa composes its middleware when callback() is called,
 *  so the app is attached at start, once every route is in. A request must arrive whole
 *  within `requestTimeoutMs` (HTTP_REQUEST_TIMEOUT), its headers within a minute at most. */
export function httpServer(requestTimeoutMs: number): Server {
  const server = createServer({
    requestTimeout: requestTimeoutMs,
    headersTimeout: Math.min(requestTimeoutMs, 60_000),
    // How often node:http looks for requests past their time (30 s by default, so a 1 s
    // limit took 30 s to act on).
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, requestTimeoutMs / 4)),
  });
  server.keepAliveTimeout = 65_000;
  // Requests node:http refuses before any handler runs (headers too large, a malformed
  // request line) still get the JSON error shape.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    const [status, reason, code, message] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'headers_too_large', 'the headers are too large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [
              408,
              'Request Timeout',
              'request_timeout',
              `the request was not received whole within ${requestTimeoutMs} ms ` +
                '(HTTP_REQUEST_TIMEOUT): it came too slowly, or this service was too busy to ' +
                'read it; nothing was accepted, retry',
            ]
          : [400, 'Bad Request', 'bad_request', 'the request is not valid HTTP/1.1'];
    socket.end(plainResponse(status, reason, errorBody(code, message)));
  });
  return server;
}

/** A whole HTTP/1.1 response with a JSON body, for sockets no framework handles. */
export function plainResponse(
  status: number,
  reason: string,
  body: unknown,
  headers: Record<string, string> = {},
): string {
  const text = JSON.stringify(body);
  const extra = Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\n${extra}` +
    `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`
  );
}

export async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}
