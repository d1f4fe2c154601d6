import type { Context } from 'koa';
import { HttpError } from './http.js';

/**
 * The request bodies a service's public port reads at once, by their announced length
 * (MAX_BODY_BYTES_IN_FLIGHT): past it, a request is answered 503 busy before its body is
 * read, and its sender retries. A body holds its share from the start of its reading to the
 * end of its answer, while it is read, parsed and stored. Without it, 3,000 senders of 1 MB
 * bodies at once (seen against npm start) ran collect out of heap in 4.5 s: it crashed,
 * and every request in flight failed with it.
 *
 * Bodies are counted where they are read (readJson), after the route's own checks: a
 * request refused for its key never holds a share, and a route's share is at most its own
 * body limit. Counted on arrival instead, 130 unauthenticated senders trickling chunked
 * bodies to auth's /v1/verify held 1 MB each and auth refused every token request.
 */
export class BodyBudget {
  private held = 0;

  /** @param maxBytes MAX_BODY_BYTES_IN_FLIGHT */
  constructor(private readonly maxBytes: number) {}

  /** Holds the share of the body `ctx` is about to read (its announced length, or the
   *  route's `limitBytes` when it has none or announces more) until its answer ends. */
  reserve(ctx: Context, limitBytes: number): void {
    const announced = Number(ctx.get('content-length') || limitBytes);
    const share = Math.min(Number.isFinite(announced) ? announced : limitBytes, limitBytes);
    if (!(share > 0)) return;
    // A request alone is always let in, however large: the budget only refuses company.
    if (this.held > 0 && this.held + share > this.maxBytes) {
      ctx.set('Retry-After', '1');
      throw new HttpError(
        503,
        'busy',
        `this service is reading ${Math.round(this.held / 1024)} KiB of requests at once ` +
          '(MAX_BODY_BYTES_IN_FLIGHT): nothing was accepted, retry shortly',
      );
    }
    this.held += share;
    // 'close' comes once the answer is written, or the connection died first.
    ctx.res.once('close', () => (this.held -= share));
  }
}
