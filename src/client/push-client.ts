// The client library, for browsers and Node alike: it uses only the WebSocket API both
// share (the browser's, or `ws`'s, which offers the same), and fetch. Browsers load the
// compiled files as they are, without a bundler (the demo page), so it imports only its
// own modules and the protocol, none of which imports a package.
import type { MessageFrame, ServerFrame } from '../protocol/frames.js';
import { ackFrame, CloseCode, PING_FRAME } from '../protocol/frames.js';
import {
  resolveOptions,
  type PushClientOptions,
  type ResolvedOptions,
  type WebSocketLike,
} from './client-options.js';
import { DedupeWindow } from './dedupe-window.js';
import { fallbacksOf, isNodeUrl, takeFallback } from './fallbacks.js';

export type { PushClientOptions, WebSocketConstructor, WebSocketLike } from './client-options.js';

export interface PushMessage {
  id: string;
  payload: unknown;
  createdAt: string;
}

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

interface Events {
  message: PushMessage;
  state: ConnectionState;
  /** A redelivered message the client had already processed: dropped, and acked again
   *  (with autoAck: false, only once `ack(id)` was called for it). */
  duplicate: string;
  /** A connection attempt, the socket, or a message listener failed; the client retries
   *  by itself, and a message whose listener failed is processed again on redelivery. */
  error: Error;
}
type Listener<K extends keyof Events> = K extends 'message'
  ? (message: PushMessage) => unknown
  : (value: Events[K]) => void;

/**
 * Connects through /v1/connect, reconnects with jittered backoff (at once when a node
 * restarts: close 1012), notices dead connections by its heartbeat, acks what its
 * listeners processed, and drops messages it has already processed, since the cluster
 * delivers at least once. When an open socket is lost, the next attempt goes straight to
 * one of the fallbacks /v1/connect named, at random; only when that one fails is
 * /v1/connect asked again. So the clients of a lost node do not all ask dispatch at once,
 * and they come back even while dispatch is unreachable.
 */
export class PushClient {
  private ws: WebSocketLike | undefined;
  private state: ConnectionState = 'closed';
  private stopped = true;
  /** Bumped by every attempt and by stop(): an attempt that finds another generation
   *  current has been superseded and gives up without opening anything. */
  private generation = 0;
  private failures = 0;
  /** Other push nodes the last /v1/connect answer named, less those tried since. */
  private fallbacks: string[] = [];
  /** True when the last socket had opened before it went: the next attempt tries a
   *  fallback first. */
  private lost = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Ends the attempt in flight: its /v1/connect request, or its socket's handshake. */
  private cancelAttempt: (() => void) | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  /** Heartbeat rounds in a row with no frame heard, and whether any frame came in since the
   *  last round (counts and a flag rather than timestamps: a clock that jumps cannot fake
   *  a silence). */
  private silentRounds = 0;
  private heard = false;
  /** Ids processed (listeners succeeded): a redelivered copy of one is dropped. */
  private readonly seen: DedupeWindow;
  /** Ids whose listeners are running, each with whether ack(id) was called meanwhile
   *  (autoAck: false): another copy of one of them is dropped. */
  private readonly processing = new Map<string, boolean>();
  private readonly listeners: { [K in keyof Events]: Set<Listener<K>> } = {
    message: new Set(),
    state: new Set(),
    duplicate: new Set(),
    error: new Set(),
  };
  private readonly o: ResolvedOptions;
  /** The push node URL of the current or last connection. */
  nodeUrl: string | undefined;

  /** Throws a TypeError or RangeError naming the option when an option is invalid. */
  constructor(options: PushClientOptions) {
    this.o = resolveOptions(options);
    this.seen = new DedupeWindow(this.o.dedupeWindow);
  }

  /** Adds a listener; returns the function that removes it. A `message` listener may
   *  return a promise: the message is acked once every listener's promise resolved. */
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
    this.failures = 0;
    this.lost = false;
    void this.connect();
  }

  /** Closes the socket and ends any attempt in flight; start() begins anew. */
  stop(): void {
    this.stopped = true;
    this.generation++;
    clearTimeout(this.retryTimer);
    this.cancelAttempt?.();
    const ws = this.ws;
    this.drop();
    if (ws?.readyState === 1) ws.close(1000, 'client stopped');
    else if (ws) end(ws);
    this.setState('closed');
  }

  /** Acks a message by id. Needed only with autoAck: false: call it once the message is
   *  handled. A redelivery of an id acked this way (its ack lost with a socket) is then
   *  acked again by the client itself. */
  ack(id: string): void {
    if (!this.seen.markAcked(id) && this.processing.has(id)) this.processing.set(id, true);
    if (this.ws?.readyState === 1) this.ws.send(ackFrame(id));
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    const current = (): boolean => !this.stopped && generation === this.generation;
    this.setState(this.failures === 0 && this.state === 'closed' ? 'connecting' : 'reconnecting');
    let url: string;
    let token: string;
    try {
      let fallback: string | undefined;
      if (this.lost)
        ({ url: fallback, left: this.fallbacks } = takeFallback(this.fallbacks, this.nodeUrl));
      this.lost = false;
      url = fallback ?? (await this.askForNode());
      if (!current()) return;
      token = await this.o.getToken();
    } catch (err) {
      if (!current()) return;
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      return this.retry(false);
    }
    if (!current()) return;
    this.nodeUrl = url;
    let ws: WebSocketLike;
    try {
      ws = new this.o.WebSocket(
        `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`,
      );
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)));
      return this.retry(false);
    }
    this.ws = ws;
    const opening = setTimeout(() => {
      if (this.ws !== ws) return;
      this.emit(
        'error',
        new Error(`connection to ${url} did not open within ${this.o.connectTimeoutMs} ms`),
      );
      this.abandon(ws);
    }, this.o.connectTimeoutMs);
    this.cancelAttempt = () => clearTimeout(opening);
    ws.onopen = () => {
      clearTimeout(opening);
      if (this.ws !== ws) return;
      this.failures = 0;
      this.startHeartbeat(ws, url);
      this.setState('open');
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.onFrame(ev.data);
    };
    // Never null: `ws` throws an 'error' event that has no listener. onclose follows.
    ws.onerror = () => undefined;
    ws.onclose = (ev) => {
      clearTimeout(opening);
      if (this.ws !== ws) return;
      this.drop();
      if (this.state !== 'open')
        this.emit('error', new Error(`connection to ${url} failed (close ${ev.code})`));
      else this.lost = true;
      // A restarting node asks its clients to move at once; anything else backs off.
      this.retry(ev.code === CloseCode.ServiceRestart);
    };
  }

  /** GET /v1/connect: the URL of the push node to connect to, within connectTimeoutMs;
   *  keeps the fallbacks it names. */
  private async askForNode(): Promise<string> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.o.connectTimeoutMs);
    const cancel = (): void => {
      clearTimeout(timer);
      controller.abort();
    };
    this.cancelAttempt = cancel;
    try {
      const res = await fetch(this.o.connectUrl, {
        cache: 'no-store',
        signal: controller.signal,
      } as RequestInit);
      if (!res.ok) throw new Error(`connect endpoint answered ${res.status}`);
      const answer = (await res.json()) as { url?: unknown; fallbacks?: unknown } | null;
      const url = answer?.url;
      if (!isNodeUrl(url))
        throw new Error(`connect endpoint answered no ws:// or wss:// url: ${String(url)}`);
      this.fallbacks = fallbacksOf(answer?.fallbacks, url);
      return url;
    } catch (err) {
      if (timedOut)
        throw new Error(`connect endpoint did not answer within ${this.o.connectTimeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
      // A stop() and start() meanwhile may have begun another attempt: leave its cancel be.
      if (this.cancelAttempt === cancel) this.cancelAttempt = undefined;
    }
  }

  /**
   * A ping every half interval; two rounds in a row with nothing heard (at least one whole
   * interval of silence since a ping) mean the connection is dead (the node hung, the
   * network changed, the machine slept): the socket is dropped and the client reconnects.
   * So a dead connection is noticed between 1 and 1.5 intervals after the last frame, and
   * the client is on another node within 2 intervals. Throttled timers (a background tab)
   * only make rounds late, never wrong: what counts is whether a frame came after the
   * ping, not how long ago.
   */
  private startHeartbeat(ws: WebSocketLike, url: string): void {
    this.heard = true;
    this.silentRounds = 0;
    const round = (): void => {
      if (this.ws !== ws) return;
      this.silentRounds = this.heard ? 0 : this.silentRounds + 1;
      this.heard = false;
      if (this.silentRounds >= 2) {
        const silence = `no frame from ${url} within ${this.o.heartbeatIntervalMs} ms of a ping`;
        this.emit('error', new Error(`${silence}: reconnecting`));
        this.lost = true; // it had opened: the next attempt tries a fallback
        return this.abandon(ws);
      }
      if (ws.readyState === 1) ws.send(PING_FRAME);
    };
    this.heartbeatTimer = setInterval(round, this.o.heartbeatIntervalMs / 2);
  }

  /** Gives up on a socket that did not open in time or went silent, and retries. */
  private abandon(ws: WebSocketLike): void {
    this.drop();
    end(ws);
    this.retry(false);
  }

  /** Forgets the current socket (its events are ignored from now on) and its timers. */
  private drop(): void {
    this.ws = undefined;
    this.cancelAttempt?.();
    this.cancelAttempt = undefined;
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private retry(immediately: boolean): void {
    if (this.stopped) return;
    this.setState('reconnecting');
    const ceiling = immediately
      ? 100
      : Math.min(this.o.backoffMaxMs, this.o.backoffInitialMs * 2 ** this.failures);
    this.failures++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), Math.random() * ceiling);
  }

  private onFrame(data: unknown): void {
    this.heard = true;
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer);
    let frame: ServerFrame;
    try {
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      return this.emit('error', new Error('server sent a frame that is not JSON'));
    }
    if (frame?.type === 'error')
      return this.emit('error', new Error(`server: ${frame.code}: ${frame.message}`));
    if (frame?.type !== 'message' || typeof frame.id !== 'string') return; // pong, or newer
    const m = frame as MessageFrame;
    const acked = this.seen.get(m.id);
    if (acked !== undefined) {
      this.emit('duplicate', m.id);
      if (acked) this.ack(m.id);
    } else if (!this.processing.has(m.id)) {
      this.process({ id: m.id, payload: m.payload, createdAt: m.createdAt });
    }
  }

  /**
   * Runs every message listener on a message. Only when each returned (or its promise
   * resolved) without an error is the message remembered and acked (autoAck); otherwise
   * the failure is an `error` event and the message stays unacked and unremembered, so
   * its redelivery is processed again.
   */
  private process(m: PushMessage): void {
    const failures: unknown[] = [];
    const pending: PromiseLike<unknown>[] = [];
    this.processing.set(m.id, false);
    for (const listener of this.listeners.message) {
      try {
        const result = listener(m);
        if (isThenable(result)) pending.push(result);
      } catch (err) {
        failures.push(err);
      }
    }
    const settle = (): void => {
      const ackedMeanwhile = this.processing.get(m.id) === true;
      this.processing.delete(m.id);
      if (failures.length > 0) {
        const first = failures[0];
        const why = first instanceof Error ? first.message : String(first);
        this.emit(
          'error',
          new Error(`a message listener failed on ${m.id}, left unacked: ${why}`, { cause: first }),
        );
        return;
      }
      this.seen.remember(m.id, this.o.autoAck || ackedMeanwhile);
      if (this.o.autoAck) this.ack(m.id);
    };
    if (pending.length === 0) return settle();
    void Promise.allSettled(pending).then((results) => {
      for (const r of results) if (r.status === 'rejected') failures.push(r.reason);
      settle();
    });
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  /** Calls the listeners of a non-message event. One that throws is reported as an uncaught
   *  error, later, so that it cannot break the client's own bookkeeping. */
  private emit<K extends Exclude<keyof Events, 'message'>>(event: K, value: Events[K]): void {
    for (const listener of this.listeners[event] as Set<(v: Events[K]) => void>) {
      try {
        listener(value);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}

/** Ends a socket that is not wanted any more, without waiting for a closing handshake
 *  where the implementation allows it (`ws`); a browser's close() is all there is. */
function end(ws: WebSocketLike): void {
  ws.onerror = () => undefined;
  if (typeof ws.terminate === 'function') ws.terminate();
  else ws.close();
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
