import type { ServiceView, Instance } from './discovery.js';
import { INTERNAL_SECRET_HEADER } from './protocol.js';

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
 * reached. fetch keeps connections alive, so a busy path reuses its sockets.
 */
export class Peers {
  private next = 0;

  constructor(
    private readonly view: ServiceView,
    private readonly secret: string,
    private readonly timeoutMs: number,
  ) {}

  get service(): string {
    return this.view.service;
  }

  /** Calls some passing instance, trying up to three before giving up. */
  async call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const instances = this.view.instances();
    if (instances.length === 0)
      throw new PeerUnavailable(`no passing ${this.service} instance in Consul`);
    let lastError: unknown;
    for (let i = 0; i < Math.min(3, instances.length); i++) {
      const instance = instances[this.next++ % instances.length] as Instance;
      try {
        return await this.callInstance<T>(instance, method, path, body);
      } catch (err) {
        if (err instanceof PeerError) throw err;
        lastError = err;
      }
    }
    throw new PeerUnavailable(`${this.service} unreachable: ${(lastError as Error).message}`);
  }

  async callInstance<T>(
    instance: Instance,
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<T> {
    const res = await fetch(`http://${instance.address}:${instance.port}${path}`, {
      method,
      headers: { 'content-type': 'application/json', [INTERNAL_SECRET_HEADER]: this.secret },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    const text = await res.text();
    if (!res.ok)
      throw new PeerError(
        res.status,
        `${this.service} ${instance.id} ${method} ${path}: ${res.status} ${text.slice(0, 200)}`,
      );
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
