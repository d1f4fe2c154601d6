// The client library, for browsers and Node alike: it uses only the WebSocket API both
// share (the browser's, or `ws`'s, which offers the same), and fetch.
import type { MessageFrame, ServerFrame } from '../protocol/frames.js';
import { ackFrame, CloseCode } from '../protocol/frames.js';

/** What a browser WebSocket and `ws` have in common, as far as this client uses it. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface PushMessage {
  id: string;
  payload: unknown;
  createdAt: string;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface PushClientOptions {
  /** dispatch's connect endpoint, e.g. http://127.0.0.1:7003/v1/connect */
  connectUrl: string;
  /** Called before every connection attempt: return a valid token (cache it yourself). */
  getToken: () => string | Promise<string>;
  /** Defaults to globalThis.WebSocket (browsers, Node ≥ 22). On Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** Ack every message as soon as the message listeners have run (default true). */
  autoAck?: boolean;
  /** Reconnect backoff: full jitter between 0 and min(maxMs, initialMs × 2^n). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** How many recent ids are remembered to drop redelivered duplicates (default 10,000). */
  dedupeWindow?: number;
}

interface Events {
  message: PushMessage;
  state: ConnectionState;
  /** A redelivered message the client had already seen: dropped, but acked again. */
  duplicate: string;
  /** A connection attempt or the socket failed; the client retries by itself. */
  error: Error;
}
type Listener<K extends keyof Events> = (value: Events[K]) => void;

/**
 * Connects through /v1/connect, reconnects with jittered backoff (at once when a node
 * restarts: close 1012), acks, and drops messages it has already delivered, since the
 * cluster delivers at least once.
 */
export class PushClient {
  private ws: WebSocketLike | undefined;
  private state: ConnectionState = 'closed';
  private stopped = true;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly seen = new Set<string>();
  /** Ring of the remembered ids, oldest at `seenNext`, to forget them in order. */
  private readonly seenRing: (string | undefined)[];
  private seenNext = 0;
  private readonly listeners: { [K in keyof Events]: Set<Listener<K>> } = {
    message: new Set(),
    state: new Set(),
    duplicate: new Set(),
    error: new Set(),
  };
  private readonly WS: WebSocketConstructor;
  /** The push node URL of the current or last connection. */
  nodeUrl: string | undefined;

  constructor(private readonly o: PushClientOptions) {
    const ctor = o.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!ctor)
      throw new Error(
        'no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package)',
      );
    this.WS = ctor;
    this.seenRing = new Array<string | undefined>(o.dedupeWindow ?? 10_000);
  }

  on<K extends keyof Events>(event: K, listener: Listener<K>): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  get connectionState(): ConnectionState {
    return this.state;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.ws?.close(1000, 'client stopped');
    this.ws = undefined;
    this.setState('closed');
  }

  /** Acks a message by id (needed only with autoAck: false). */
  ack(id: string): void {
    if (this.ws?.readyState === 1) this.ws.send(ackFrame(id));
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.setState(this.failures === 0 && this.state === 'closed' ? 'connecting' : 'reconnecting');
    let url: string;
    let token: string;
    try {
      const res = await fetch(this.o.connectUrl, { cache: 'no-store' } as RequestInit);
      if (!res.ok) throw new Error(`connect endpoint answered ${res.status}`);
      url = ((await res.json()) as { url: string }).url;
      token = await this.o.getToken();
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      return this.retry(false);
    }
    if (this.stopped) return;
    this.nodeUrl = url;
    const ws = new this.WS(
      `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`,
    );
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.setState('open');
    };
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onerror = () => undefined; // onclose follows, with the code that matters
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = undefined;
      if (this.stopped) return;
      if (this.state !== 'open')
        this.emit('error', new Error(`connection to ${url} failed (close ${ev.code})`));
      // A restarting node asks its clients to move at once; anything else backs off.
      this.retry(ev.code === CloseCode.ServiceRestart);
    };
  }

  private retry(immediately: boolean): void {
    if (this.stopped) return;
    this.setState('reconnecting');
    const initial = this.o.backoff?.initialMs ?? 250;
    const max = this.o.backoff?.maxMs ?? 10_000;
    const ceiling = immediately ? 100 : Math.min(max, initial * 2 ** this.failures);
    this.failures++;
    this.retryTimer = setTimeout(() => void this.connect(), Math.random() * ceiling);
  }

  private onFrame(data: unknown): void {
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer);
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return this.emit('error', new Error('server sent a frame that is not JSON'));
    }
    if (frame.type === 'error')
      return this.emit('error', new Error(`server: ${frame.code}: ${frame.message}`));
    if (frame.type !== 'message') return;
    const m = frame as MessageFrame;
    if (this.seen.has(m.id)) {
      this.emit('duplicate', m.id);
    } else {
      this.remember(m.id);
      this.emit('message', { id: m.id, payload: m.payload, createdAt: m.createdAt });
    }
    if (this.o.autoAck !== false) this.ack(m.id);
  }

  private remember(id: string): void {
    const evicted = this.seenRing[this.seenNext];
    if (evicted !== undefined) this.seen.delete(evicted);
    this.seenRing[this.seenNext] = id;
    this.seenNext = (this.seenNext + 1) % this.seenRing.length;
    this.seen.add(id);
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  private emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of this.listeners[event]) listener(value);
  }
}
