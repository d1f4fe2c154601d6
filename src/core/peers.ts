import { Agent, request } from 'node:http';
import type { ServiceView, Instance } from './discovery.js';
import { INTERNAL_SECRET_HEADER, type Hop, type Serialized } from '../protocol/hops.js';

/** Internal hops go to the instance's internal port when it has one of its own. */
function portFor(instance: Instance, hop: Hop<unknown, unknown>): number {
  const internal = instance.meta.internal_port;
  return hop.access === 'internal' && internal ? Number(internal) : instance.port;
}

/** No passing instance of a peer service answered. */
export class PeerUnavailable extends Error {}

/** A peer answered with an error status. */
export class PeerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Calls to the instances of one peer service, found in its live Consul view:
 * round-robin over the passing instances, moving on to the next when one cannot be
 * reached. Calls go through node:http with a keep-alive agent rather than fetch: on
 * this path (every message crosses two hops) fetch cost a fifth of the throughput.
 */
export interface PeersOptions {
  view: ServiceView;
  /** INTERNAL_SECRET, sent on every call. */
  secret: string;
  timeoutMs: number;
  /**
   * What to do when no instance is passing: fail at once, or try the last ones that
   * were. Only for calls where a failing peer's answer is still worth having (token
   * checks: an auth instance that flaps under a connect storm still verifies tokens
   * correctly; a push node's replays, acks and delivered marks with collect); never for
   * routing messages.
   */
  whenNonePassing?: 'fail' | 'try-last-known';
}

export class Peers {
  private next = 0;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private readonly view: ServiceView;
  private readonly secret: string;
  private readonly timeoutMs: number;
  private readonly tryLastKnown: boolean;

  constructor(o: PeersOptions) {
    this.view = o.view;
    this.secret = o.secret;
    this.timeoutMs = o.timeoutMs;
    this.tryLastKnown = o.whenNonePassing === 'try-last-known';
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  get service(): string {
    return this.view.service;
  }

  /** Calls some passing instance, trying up to three before giving up. */
  async call<Req, Res>(hop: Hop<Req, Res>, body: Req | Serialized<Req>): Promise<Res> {
    let instances = this.view.instances();
    if (instances.length === 0 && this.tryLastKnown) instances = this.view.lastKnown();
    if (instances.length === 0)
      throw new PeerUnavailable(`no passing ${this.service} instance in Consul`);
    let lastError: unknown;
    for (let i = 0; i < Math.min(3, instances.length); i++) {
      const instance = instances[this.next++ % instances.length] as Instance;
      try {
        return await this.callInstance(instance, hop, body);
      } catch (err) {
        if (err instanceof PeerError) throw err;
        lastError = err;
      }
    }
    throw new PeerUnavailable(`${this.service} unreachable: ${(lastError as Error).message}`);
  }

  /** Calls one instance. Its answer is typed by the hop, not checked: peers are ours. */
  callInstance<Req, Res>(
    instance: Instance,
    hop: Hop<Req, Res>,
    body: Req | Serialized<Req>,
  ): Promise<Res> {
    // Every request body is an object: a string is one already serialized.
    const payload = typeof body === 'string' ? body : JSON.stringify(body);
    const { path } = hop;
    const method = 'POST';
    return new Promise<Res>((resolve, reject) => {
      const req = request(
        {
          host: instance.address,
          port: portFor(instance, hop),
          method,
          path,
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: {
            ...(hop.access === 'internal' ? { [INTERNAL_SECRET_HEADER]: this.secret } : {}),
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              reject(
                new PeerError(
                  status,
                  `${this.service} ${instance.id} ${method} ${path}: ${status} ${text.slice(0, 200)}`,
                ),
              );
              return;
            }
            try {
              resolve(JSON.parse(text) as Res);
            } catch (err) {
              reject(err as Error);
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
