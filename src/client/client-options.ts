// The client library's options: what each one means, its default, and the checks that
// turn a wrong one into an error naming it. Imports nothing (browsers load it as is).

/** What a browser WebSocket and `ws` have in common, as far as this client uses it. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drops the connection without a closing handshake. */
  terminate?(): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface PushClientOptions {
  /** dispatch's connect endpoint, e.g. http://127.0.0.1:7003/v1/connect (in a browser page,
   *  relative to the page). */
  connectUrl: string;
  /** Called before every connection attempt: return a valid token (cache it yourself). */
  getToken: () => string | Promise<string>;
  /** Defaults to globalThis.WebSocket (browsers, Node ≥ 22). On Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Ack each message once every `message` listener has returned, or the promise it
   *  returned has resolved (default true). With false, call `ack(id)` yourself. */
  autoAck?: boolean;
  /** Reconnect backoff: full jitter between 0 and min(maxMs, initialMs × 2^n). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How many recent ids are remembered to drop redelivered duplicates (default 10,000). */
  dedupeWindow?: number;
  /** An attempt whose /v1/connect request or WebSocket opening handshake takes longer is
   *  abandoned and retried with backoff (default 10,000 ms). */
  connectTimeoutMs?: number;
  /** The heartbeat: a ping frame goes out every half of this on an open socket; when no
   *  frame of any kind has come back for this long after a ping, the socket is dropped and
   *  the client reconnects through /v1/connect (default 15,000 ms: a dead connection is
   *  noticed 1 to 1.5 times this after its last frame, and left within twice this). */
  heartbeatIntervalMs?: number;
}

const DEFAULTS = {
  backoffInitialMs: 250,
  backoffMaxMs: 10_000,
  dedupeWindow: 10_000,
  connectTimeoutMs: 10_000,
  heartbeatIntervalMs: 15_000,
};
/** setTimeout fires at once for longer delays. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** The options with every default applied, each checked. */
export interface ResolvedOptions {
  connectUrl: string;
  getToken: () => string | Promise<string>;
  WebSocket: WebSocketConstructor;
  autoAck: boolean;
  backoffInitialMs: number;
  backoffMaxMs: number;
  connectTimeoutMs: number;
  heartbeatIntervalMs: number;
  dedupeWindow: number;
}

/** Throws a TypeError or RangeError naming the option when an option is invalid. */
export function resolveOptions(o: PushClientOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw new TypeError('PushClient: options required');
  const connectUrl = checkConnectUrl(o.connectUrl);
  if (typeof o.getToken !== 'function')
    throw new TypeError('PushClient: getToken must be a function returning a token');
  if (o.autoAck !== undefined && typeof o.autoAck !== 'boolean')
    throw new TypeError('PushClient: autoAck must be a boolean');
  const ctor = o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof ctor !== 'function')
    throw new TypeError(
      'PushClient: no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package)',
    );
  const backoffInitialMs = delay(
    'backoff.initialMs',
    o.backoff?.initialMs,
    DEFAULTS.backoffInitialMs,
  );
  const backoffMaxMs = delay('backoff.maxMs', o.backoff?.maxMs, DEFAULTS.backoffMaxMs);
  if (backoffInitialMs > backoffMaxMs)
    throw new RangeError(
      `PushClient: backoff.initialMs (${backoffInitialMs}) must not exceed backoff.maxMs (${backoffMaxMs})`,
    );
  const dedupeWindow = o.dedupeWindow ?? DEFAULTS.dedupeWindow;
  if (!Number.isSafeInteger(dedupeWindow) || dedupeWindow < 1)
    throw new RangeError(
      `PushClient: dedupeWindow must be an integer of at least 1, got ${String(o.dedupeWindow)}`,
    );
  return {
    connectUrl,
    getToken: o.getToken,
    WebSocket: ctor,
    autoAck: o.autoAck ?? true,
    backoffInitialMs,
    backoffMaxMs,
    connectTimeoutMs: delay('connectTimeoutMs', o.connectTimeoutMs, DEFAULTS.connectTimeoutMs),
    heartbeatIntervalMs: delay(
      'heartbeatIntervalMs',
      o.heartbeatIntervalMs,
      DEFAULTS.heartbeatIntervalMs,
    ),
    dedupeWindow,
  };
}

function checkConnectUrl(value: unknown): string {
  if (typeof value !== 'string' || value === '')
    throw new TypeError('PushClient: connectUrl must be the URL of /v1/connect');
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  let url: URL;
  try {
    url = new URL(value, base);
  } catch {
    throw new TypeError(
      `PushClient: connectUrl ${JSON.stringify(value)} is not a URL${base ? '' : ' (relative URLs only work in a page)'}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TypeError(`PushClient: connectUrl must be http: or https:, got ${url.protocol}`);
  return url.href;
}

/** A delay option: a positive number of milliseconds that setTimeout can take. */
function delay(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_DELAY_MS)
    throw new RangeError(
      `PushClient: ${name} must be a number of milliseconds above 0 and at most ${MAX_DELAY_MS}, got ${String(value)}`,
    );
  return value;
}
