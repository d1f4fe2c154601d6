// Client worker: holds many WebSocket (or Socket.IO) clients, acks every message, counts
// deliveries and records ingest → socket latency from the send time in each payload.
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { emit, serve } from '../lib/ipc.js';
import { LeanWebSocket } from '../lib/lean-websocket.js';
import { signToken, type SignOptions } from '../lib/tokens.js';

export type ClientKind = 'raw' | 'cluster' | 'sio';

export interface ClientSpec {
  user: string;
  /** ws:// (raw, cluster) or http:// (sio) base URL of the node this client connects to. */
  url: string;
  /** cluster: the token, or undefined to sign one with `sign` */
  token?: string;
}

export interface ConnectArgs {
  kind: ClientKind;
  clients: ClientSpec[];
  /** Loopback source addresses to spread over (past the ephemeral-port limit of one). */
  localAddresses: string[];
  concurrency: number;
  /** Gives up opening more after this long (the loop is bounded in count and time). */
  deadlineMs: number;
  /** HS256 signing for cluster clients without a token, as auth would issue it. */
  sign?: SignOptions;
  /** Answer each message with an ack (default true). */
  ack?: boolean;
  /** Attempts after a refused or failed one, per client, 200 ms apart (default 2). */
  retries?: number;
  /** raw and cluster: bare-socket clients (lib/lean-websocket.ts) instead of `ws` ones. */
  lean?: boolean;
}

export interface ConnectResult {
  opened: number;
  /** clients that never connected */
  failed: number;
  /** attempts that failed and were tried again */
  retried: number;
  firstError?: string;
  /** performance.timeOrigin-based wall clock (ms) of the first attempt and the last open. */
  startedAt: number;
  lastOpenAt: number;
  open: number;
}

interface Payload {
  /** send time, wall clock ms (performance.timeOrigin + performance.now()) */
  t?: number;
  /** fan-out tag */
  f?: string;
}

const now = (): number => performance.timeOrigin + performance.now();

let kind: ClientKind = 'raw';
let ackOn = true;
const sockets: (WebSocket | LeanWebSocket)[] = [];
const sios: Socket[] = [];

// ---- what arrived ---------------------------------------------------------------

let delivered = 0;
let duplicates = 0;
let frames = 0;
let seen = new Set<string>();
/** (send time, latency) pairs of this phase, growable. */
let sendTimes: Float64Array = new Float64Array(1 << 16);
let latencies: Float64Array = new Float64Array(1 << 16);
/** createdAt (stamped by the system at ingest, ms precision) − send time: the ingest part. */
let ingestParts: Float64Array = new Float64Array(1 << 16);
let samples = 0;
let recording = false;
const fanout = new Map<string, number[]>();

function onMessage(id: string, payload: Payload, at: number, createdAt?: string): void {
  frames++;
  if (seen.has(id)) {
    duplicates++;
    return;
  }
  seen.add(id);
  delivered++;
  if (payload.f !== undefined) {
    let list = fanout.get(payload.f);
    if (!list) fanout.set(payload.f, (list = []));
    list.push(at);
    return;
  }
  if (recording && payload.t !== undefined) {
    if (samples === sendTimes.length) {
      const grow = (a: Float64Array): Float64Array => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      sendTimes = grow(sendTimes);
      latencies = grow(latencies);
      ingestParts = grow(ingestParts);
    }
    sendTimes[samples] = payload.t;
    latencies[samples] = at - payload.t;
    ingestParts[samples] = createdAt ? Date.parse(createdAt) - payload.t : NaN;
    samples++;
  }
}

// Progress for the driver's window: cumulative unique deliveries, 40 times a second.
let reported = -1;
setInterval(() => {
  if (delivered !== reported) {
    reported = delivered;
    emit('progress', { delivered, duplicates });
  }
}, 25).unref();

// ---- connecting ------------------------------------------------------------------

const openNow = (): number =>
  sockets.filter((ws) =>
    ws instanceof LeanWebSocket ? ws.isOpen : ws.readyState === WebSocket.OPEN,
  ).length + sios.filter((s) => s.connected).length;

/** Reads a frame from the node: a message is acked and counted. */
function onFrame(text: string, ws: { send(text: string): void }): void {
  const at = now();
  const frame = JSON.parse(text) as {
    type: string;
    id: string;
    payload: Payload;
    createdAt?: string;
  };
  if (frame.type !== 'message') return;
  if (ackOn) ws.send(JSON.stringify({ type: 'ack', id: frame.id }));
  onMessage(frame.id, frame.payload ?? {}, at, frame.createdAt);
}

async function openLean(spec: ClientSpec, url: string, localAddress: string): Promise<void> {
  const ws = await LeanWebSocket.open(url, {
    localAddress,
    timeoutMs: 30_000,
    onMessage: (socket, text) => onFrame(text, socket),
  }).catch((err: Error) => {
    throw new Error(`${spec.user}: ${err.message}`);
  });
  sockets.push(ws);
}

function openRaw(spec: ClientSpec, url: string, localAddress: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      localAddress,
      perMessageDeflate: false,
      handshakeTimeout: 30_000,
    });
    ws.on('message', (data) => onFrame(data.toString(), ws));
    ws.once('open', () => {
      sockets.push(ws);
      resolve();
    });
    // Before open this rejects; after it, a socket error only shows in the open count.
    ws.on('error', reject);
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        reject(new Error(`${spec.user}: upgrade refused with ${res.statusCode} ${body}`));
        req.destroy();
      });
      res.on('error', () =>
        reject(new Error(`${spec.user}: upgrade refused with ${res.statusCode}`)),
      );
    });
  });
}

function openSio(spec: ClientSpec, localAddress: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = io(spec.url, {
      transports: ['websocket'],
      query: { user: spec.user },
      forceNew: true,
      reconnection: false,
      timeout: 30_000,
      // engine.io-client hands this on to `ws` (not in its typings).
      ...({ localAddress } as object),
    });
    socket.on('message', (frame: { id: string; payload: Payload; createdAt?: string }) => {
      const at = now();
      if (ackOn) socket.emit('ack', frame.id);
      onMessage(frame.id, frame.payload ?? {}, at, frame.createdAt);
    });
    socket.once('connect', () => {
      sios.push(socket);
      resolve();
    });
    socket.once('connect_error', (err) => {
      socket.close();
      reject(err);
    });
  });
}

async function connect(a: ConnectArgs): Promise<ConnectResult> {
  kind = a.kind;
  ackOn = a.ack ?? true;
  const startedAt = now();
  const deadline = Date.now() + a.deadlineMs;
  const queue = a.clients.map((_, i) => i);
  const attempts = new Uint8Array(a.clients.length);
  const retries = a.retries ?? 2;
  let opened = 0;
  let failed = 0;
  let retried = 0;
  let firstError: string | undefined;
  let lastOpenAt = startedAt;
  const one = async (i: number): Promise<void> => {
    const spec = a.clients[i] as ClientSpec;
    const localAddress = a.localAddresses[i % a.localAddresses.length] as string;
    if (kind === 'sio') return openSio(spec, localAddress);
    let url = spec.url;
    if (kind === 'cluster') {
      const token = spec.token ?? signed.get(spec.user) ?? signToken(spec.user, a.sign);
      url += `?token=${encodeURIComponent(token)}`;
    } else url += `?user=${encodeURIComponent(spec.user)}`;
    return a.lean ? openLean(spec, url, localAddress) : openRaw(spec, url, localAddress);
  };
  // A bounded pool: at most `concurrency` handshakes at once, each client tried at most
  // 1 + `retries` times, never past the deadline.
  await Promise.all(
    Array.from({ length: Math.max(1, a.concurrency) }, async () => {
      while (queue.length > 0 && Date.now() < deadline) {
        const i = queue.shift() as number;
        try {
          await one(i);
          opened++;
          lastOpenAt = now();
        } catch (err) {
          firstError ??= (err as Error).message;
          if ((attempts[i] as number) < retries) {
            attempts[i] = (attempts[i] as number) + 1;
            retried++;
            await new Promise((r) => setTimeout(r, 200));
            queue.push(i);
          } else failed++;
        }
      }
    }),
  );
  failed += queue.length; // left when the deadline passed
  return { opened, failed, retried, firstError, startedAt, lastOpenAt, open: openNow() };
}

// ---- commands ---------------------------------------------------------------------

/** Tokens signed ahead (the `sign` command), by user: a real client has its token before it
 *  connects, so signing is not part of a timed connect. */
const signed = new Map<string, string>();

serve({
  sign: (a: { users: string[]; sign: SignOptions }) => {
    for (const user of a.users) signed.set(user, signToken(user, a.sign));
  },
  connect: (a: ConnectArgs) => connect(a),
  /** Starts a phase: forgets what arrived before, optionally records latencies. */
  reset: (a: { record: boolean }) => {
    delivered = 0;
    duplicates = 0;
    frames = 0;
    reported = -1;
    seen = new Set();
    samples = 0;
    recording = a.record;
    fanout.clear();
    return { ok: true };
  },
  counts: () => ({ delivered, duplicates, frames, open: openNow() }),
  /** Latencies (ms) of the messages sent within [from, to] (wall clock ms). */
  latencies: (a: { from: number; to: number; ingest?: boolean }) => {
    const out: number[] = [];
    const from = a.ingest ? ingestParts : latencies;
    for (let i = 0; i < samples; i++) {
      const t = sendTimes[i] as number;
      if (t >= a.from && t <= a.to) out.push(from[i] as number);
    }
    return Float64Array.from(out);
  },
  /** (send time, latency) pairs of this phase, for looking at latency over time. */
  series: () => ({
    sendTimes: sendTimes.slice(0, samples),
    latencies: latencies.slice(0, samples),
  }),
  fanout: (a: { tag: string }) => Float64Array.from(fanout.get(a.tag) ?? []),
  close: async () => {
    for (const ws of sockets) ws.terminate();
    for (const s of sios) s.disconnect();
    sockets.length = 0;
    sios.length = 0;
    return { ok: true };
  },
  memory: () => process.memoryUsage(),
});
