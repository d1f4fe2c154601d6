// Client worker for the reconnect storm: bare-socket WebSocket clients (lib/lean-websocket.ts)
// of distinct users that, when their socket closes, connect to one of the fallbacks their
// /v1/connect answer named (at random), or, when that fails, ask dispatch's GET /v1/connect
// for a push node and connect there, with full jitter backoff between failed attempts — what
// src/client/push-client.ts does, without its heartbeat and dedupe, so that one process holds
// thousands. Every message is acked. Once armed, it records when each user is open again and
// when the tagged message reached them.
import { get } from 'node:http';
import { fallbacksOf, takeFallback } from '../../src/client/fallbacks.js';
import { serve } from '../lib/ipc.js';
import { LeanWebSocket, UpgradeRefused } from '../lib/lean-websocket.js';
import { signToken, type SignOptions } from '../lib/tokens.js';

export interface StormConnectArgs {
  users: string[];
  /** ws:// URL of the push node every user first connects to */
  url: string;
  /** dispatch's GET /v1/connect */
  connectUrl: string;
  sign: SignOptions;
  /** Loopback source addresses to spread over (past the ephemeral-port limit of one). */
  localAddresses: string[];
  concurrency: number;
  deadlineMs: number;
  /** Reconnect backoff: full jitter between 0 and min(maxMs, initialMs × 2^failures). */
  backoff: { initialMs: number; maxMs: number };
  /** Gives up reconnecting a user after this many failed attempts in a row (bounded). */
  maxAttempts: number;
}

export interface StormStatus {
  users: number;
  open: number;
  /** wall clock (ms) each user's socket closed after `arm` (the kill), NaN if it did not */
  lostAt: Float64Array;
  /** wall clock (ms) each user was open again after `arm`, NaN if not yet */
  reopenedAt: Float64Array;
  /** wall clock (ms) the tagged message first reached each user, NaN if not yet */
  receivedAt: Float64Array;
  /** for each user reopened after `arm` through /v1/connect (not a fallback), how long its
   *  successful /v1/connect call took (ms) */
  askMs: Float64Array;
  /** … and its successful WebSocket handshake (ms) */
  handshakeMs: Float64Array;
  connectCalls: number;
  /** /v1/connect or handshake attempts that failed */
  failedAttempts: number;
  /** users that gave up after maxAttempts */
  gaveUp: number;
  /** failed attempts by what failed them (user names left out) */
  errors: Record<string, number>;
}

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Client {
  index: number;
  user: string;
  token: string;
  localAddress: string;
  ws: LeanWebSocket | undefined;
  /** The push node of its current or last socket. */
  url: string | undefined;
  failures: number;
  /** The other push nodes its last /v1/connect answer named, less those tried since. */
  fallbacks: string[];
  /** Its last socket had opened before it went: the next attempt tries a fallback. */
  lost: boolean;
}

let args: StormConnectArgs | undefined;
let clients: Client[] = [];
let stopped = false;
let tag: string | undefined;
let lostAt = new Float64Array(0);
let reopenedAt = new Float64Array(0);
let receivedAt = new Float64Array(0);
let askMs = new Float64Array(0);
let handshakeMs = new Float64Array(0);
let connectCalls = 0;
let failedAttempts = 0;
let gaveUp = 0;
let errors: Record<string, number> = {};
/** Tallies a failed attempt by its cause. */
function fail(err: unknown): void {
  const what = (err as Error).message.replace(/storm-\d+/g, '<user>');
  errors[what] = (errors[what] ?? 0) + 1;
}

/** Opens the client's socket to `url`; resolves once open, rejects if it fails first. */
async function open(c: Client, url: string): Promise<void> {
  const ws = await LeanWebSocket.open(`${url}?token=${encodeURIComponent(c.token)}`, {
    localAddress: c.localAddress,
    timeoutMs: 10_000,
    onMessage: (socket, text) => {
      const frame = JSON.parse(text) as { type: string; id: string; payload?: { f?: string } };
      if (frame.type !== 'message') return;
      socket.send(JSON.stringify({ type: 'ack', id: frame.id }));
      if (tag !== undefined && frame.payload?.f === tag && Number.isNaN(receivedAt[c.index]))
        receivedAt[c.index] = now();
    },
    onClose: (socket) => {
      if (c.ws === socket) c.ws = undefined;
      if (tag !== undefined && Number.isNaN(lostAt[c.index])) lostAt[c.index] = now();
      c.lost = true;
      if (!stopped) void reconnect(c);
    },
  }).catch((err: unknown) => {
    // Tallied by status: the bodies name users.
    throw err instanceof UpgradeRefused ? new Error(`upgrade refused with ${err.status}`) : err;
  });
  // Closed already (a close frame came with the 101): its onClose is reconnecting it.
  if (!ws.isOpen) return;
  c.ws = ws;
  c.failures = 0;
  if (tag !== undefined && Number.isNaN(reopenedAt[c.index])) reopenedAt[c.index] = now();
}

/** GET /v1/connect: the ws URL of the push node to go to; keeps the fallbacks it names. */
async function askForNode(c: Client): Promise<string> {
  const { url, fallbacks } = await askDispatch(c);
  c.fallbacks = fallbacksOf(fallbacks, url);
  return url;
}

function askDispatch(c: Client): Promise<{ url: string; fallbacks: string[] }> {
  const a = args as StormConnectArgs;
  connectCalls++;
  return new Promise((resolve, reject) => {
    // A connection of its own, as every real client has: a few shared kept-alive sockets
    // throttled the storm (a /v1/connect p50 of 4.4 s over 48 sockets, dispatch at 13% CPU).
    const req = get(
      a.connectUrl,
      { agent: false, localAddress: c.localAddress, timeout: 10_000 },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`/v1/connect: ${res.statusCode}`));
          resolve(JSON.parse(body) as { url: string; fallbacks: string[] });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`/v1/connect of ${c.user} timed out`)));
    req.on('error', reject);
  });
}

/** Backoff, a fallback or /v1/connect, open; again after each failure, at most maxAttempts
 *  in a row. */
async function reconnect(c: Client): Promise<void> {
  const a = args as StormConnectArgs;
  while (!stopped) {
    const ceiling = Math.min(a.backoff.maxMs, a.backoff.initialMs * 2 ** c.failures);
    await sleep(Math.random() * ceiling);
    if (stopped) return;
    try {
      const asking = now();
      let fallback: string | undefined;
      if (c.lost) ({ url: fallback, left: c.fallbacks } = takeFallback(c.fallbacks, c.url));
      c.lost = false;
      const url = fallback ?? (await askForNode(c));
      c.url = url;
      const opening = now();
      await open(c, url);
      if (tag !== undefined) {
        askMs[c.index] = fallback === undefined ? opening - asking : NaN;
        handshakeMs[c.index] = now() - opening;
      }
      return;
    } catch (err) {
      failedAttempts++;
      fail(err);
      c.failures++;
      if (c.failures >= a.maxAttempts) {
        gaveUp++;
        return;
      }
    }
  }
}

/** First connects: every user to `url`, `concurrency` handshakes at once, 2 retries each.
 *  Each asks /v1/connect first, as a real client does, and keeps the nodes it names but
 *  `url` as its fallbacks: what it would hold had dispatch handed out `url`. */
async function connect(a: StormConnectArgs): Promise<{ opened: number; failed: number }> {
  args = a;
  stopped = false;
  clients = a.users.map((user, index) => ({
    index,
    user,
    token: signToken(user, a.sign),
    localAddress: a.localAddresses[index % a.localAddresses.length] as string,
    ws: undefined,
    url: undefined,
    failures: 0,
    fallbacks: [],
    lost: false,
  }));
  const deadline = Date.now() + a.deadlineMs;
  const queue = clients.map((c) => ({ c, tries: 0 }));
  let opened = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, a.concurrency) }, async () => {
      while (queue.length > 0 && Date.now() < deadline) {
        const item = queue.shift() as (typeof queue)[number];
        try {
          if (item.c.url === undefined) {
            const answer = await askDispatch(item.c);
            item.c.fallbacks = [answer.url, ...answer.fallbacks].filter((u) => u !== a.url);
            item.c.url = a.url;
          }
          await open(item.c, a.url);
          opened++;
        } catch (err) {
          fail(err);
          if (++item.tries <= 2) queue.push(item);
          else failed++;
        }
      }
    }),
  );
  return { opened, failed: failed + queue.length };
}

serve({
  connect: (a: StormConnectArgs) => connect(a),
  /** From now on, record reopenings and arrivals of the message whose payload.f is `tag`. */
  arm: (a: { tag: string }) => {
    tag = a.tag;
    lostAt = new Float64Array(clients.length).fill(NaN);
    reopenedAt = new Float64Array(clients.length).fill(NaN);
    receivedAt = new Float64Array(clients.length).fill(NaN);
    askMs = new Float64Array(clients.length).fill(NaN);
    handshakeMs = new Float64Array(clients.length).fill(NaN);
    connectCalls = 0;
    failedAttempts = 0;
    gaveUp = 0;
    errors = {};
    return { ok: true };
  },
  status: (): StormStatus => ({
    users: clients.length,
    open: clients.filter((c) => c.ws?.isOpen === true).length,
    lostAt,
    reopenedAt,
    receivedAt,
    askMs,
    handshakeMs,
    connectCalls,
    failedAttempts,
    gaveUp,
    errors,
  }),
  close: () => {
    stopped = true;
    for (const c of clients) c.ws?.terminate();
    return { ok: true };
  },
});
