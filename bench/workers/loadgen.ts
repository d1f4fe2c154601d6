// Load generator: offers unicast messages, round-robin over the users, to one system:
// - http: POST /v1/messages with the batch form (push-cluster's collect, the bare ws server)
// - sio:  @socket.io/redis-emitter, one emit per message to the room user:<id>
// Two modes: `saturate` (as fast as the system takes them, at most `window` messages sent
// and not yet delivered) and `rate` (a fixed offered rate, open loop, in small ticks).
import { Agent, request } from 'node:http';
import { Emitter } from '@socket.io/redis-emitter';
import { Redis } from 'ioredis';
import { monotonicFactory } from 'ulid';
import { serve } from '../lib/ipc.js';

export type LoadTarget =
  { kind: 'http'; host: string; port: number; key?: string } | { kind: 'sio'; redisUrl: string };

export interface SaturateArgs {
  durationMs: number;
  /** Most messages sent and not yet delivered. */
  window: number;
  /** Messages per POST (http) or per turn of the event loop (sio). */
  batch: number;
  /** POSTs in flight at once (http). */
  concurrency: number;
}

export interface RateArgs {
  perSecond: number;
  durationMs: number;
  tickMs: number;
}

export interface LoadResult {
  /** Messages accepted: a 202 for http, a publish for sio. */
  sent: number;
  /** Messages in refused or failed POSTs. */
  errors: number;
  /** rate mode: messages not offered because too many POSTs were still in flight */
  skipped: number;
  elapsedMs: number;
  firstSendAt: number;
  lastSendAt: number;
}

const now = (): number => performance.timeOrigin + performance.now();
const PAYLOAD_BYTES = 200;
const MAX_PER_POST = 1000;
/** rate mode: past this many POSTs in flight, a tick's messages are skipped (and counted). */
const MAX_IN_FLIGHT = 256;

let target: LoadTarget;
let users: string[] = [];
let pad = '';
let seq = 0;
let agent: Agent | undefined;
let emitter: Emitter | undefined;
let redis: Redis | undefined;
const newId = monotonicFactory();
/** Unique deliveries of this phase, as the parent reports them. */
let delivered = 0;
let wake: (() => void) | undefined;

function init(a: { target: LoadTarget; users: string[] }): { payloadBytes: number } {
  target = a.target;
  users = a.users;
  seq = 0;
  const base = JSON.stringify({ t: now(), s: 1_000_000, pad: '' }).length;
  pad = 'x'.repeat(Math.max(0, PAYLOAD_BYTES - base));
  if (target.kind === 'http') {
    agent?.destroy();
    agent = new Agent({ keepAlive: true, maxSockets: 64 });
  } else {
    redis?.disconnect();
    redis = new Redis(target.redisUrl, { enableAutoPipelining: true });
    emitter = new Emitter(redis);
  }
  return { payloadBytes: JSON.stringify(payload(now())).length };
}

const payload = (t: number): { t: number; s: number; pad: string } => ({ t, s: seq, pad });

function nextUser(): string {
  return users[seq++ % users.length] as string;
}

/** One POST of `n` messages; resolves with the HTTP status (0 when it failed). */
function post(n: number): Promise<number> {
  const t = target as Extract<LoadTarget, { kind: 'http' }>;
  const t0 = now();
  const messages = [];
  for (let i = 0; i < n; i++) {
    const to = nextUser();
    messages.push({ to, payload: payload(t0) });
  }
  const body = JSON.stringify({ messages });
  return new Promise((resolve) => {
    const req = request(
      {
        agent,
        host: t.host,
        port: t.port,
        path: '/v1/messages',
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(t.key ? { authorization: `Bearer ${t.key}` } : {}),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

/** Publishes `n` messages through the redis emitter (synchronous: ioredis queues them). */
function publish(n: number): void {
  const t0 = now();
  const createdAt = new Date().toISOString();
  for (let i = 0; i < n; i++) {
    const to = nextUser();
    const id = newId();
    (emitter as Emitter)
      .to(`user:${to}`)
      .emit('message', { type: 'message', id, payload: payload(t0), createdAt });
  }
}

async function saturate(a: SaturateArgs): Promise<LoadResult> {
  delivered = 0;
  let sent = 0;
  let errors = 0;
  let inFlight = 0;
  const started = now();
  const end = started + a.durationMs;
  let lastSendAt = started;
  await new Promise<void>((resolve) => {
    const safety = setInterval(() => pump(), 5);
    function finish(): void {
      clearInterval(safety);
      wake = undefined;
      resolve();
    }
    function pump(): void {
      if (now() >= end) {
        if (inFlight === 0) finish();
        return;
      }
      if (target.kind === 'sio') {
        // One batch per turn, so the redis writes and the parent's progress get a turn too.
        const room = a.window - (sent - delivered);
        if (room <= 0) return;
        const n = Math.min(a.batch, room);
        publish(n);
        sent += n;
        lastSendAt = now();
        setImmediate(pump);
        return;
      }
      while (inFlight < a.concurrency && sent - delivered + a.batch <= a.window) {
        inFlight++;
        sent += a.batch;
        lastSendAt = now();
        void post(a.batch).then((status) => {
          inFlight--;
          if (status !== 202) {
            sent -= a.batch;
            errors += a.batch;
          }
          pump();
        });
      }
    }
    wake = pump;
    pump();
  });
  return {
    sent,
    errors,
    skipped: 0,
    elapsedMs: now() - started,
    firstSendAt: started,
    lastSendAt,
  };
}

async function rate(a: RateArgs): Promise<LoadResult> {
  let offered = 0;
  let sent = 0;
  let errors = 0;
  let skipped = 0;
  let inFlight = 0;
  const started = now();
  let lastSendAt = started;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const t = now();
      const elapsed = Math.min(t - started, a.durationMs);
      let due = Math.floor((a.perSecond * elapsed) / 1000) - offered;
      offered += due;
      if (due > 0) lastSendAt = t;
      if (target.kind === 'sio') {
        publish(due);
        sent += due;
      } else if (inFlight >= MAX_IN_FLIGHT) skipped += due;
      else
        while (due > 0) {
          const n = Math.min(due, MAX_PER_POST);
          due -= n;
          inFlight++;
          void post(n).then((status) => {
            inFlight--;
            if (status === 202) sent += n;
            else errors += n;
          });
        }
      if (t - started < a.durationMs) setTimeout(tick, a.tickMs);
      else {
        const waitInFlight = setInterval(() => {
          if (inFlight === 0) {
            clearInterval(waitInFlight);
            resolve();
          }
        }, 5);
      }
    };
    tick();
  });
  return { sent, errors, skipped, elapsedMs: now() - started, firstSendAt: started, lastSendAt };
}

serve({
  init,
  saturate,
  rate,
  /** The parent's running count of unique deliveries since the phase began. */
  delivered: (a: { n: number }) => {
    delivered = a.n;
    wake?.();
  },
  close: async () => {
    agent?.destroy();
    if (redis) await redis.quit().catch(() => undefined);
    return { ok: true };
  },
});
