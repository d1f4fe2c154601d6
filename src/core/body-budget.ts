import type { Context, Next } from 'koa';
import { HttpError } from './http.js';

/**
 * The request bodies a service's public port holds at once, by their announced length
 * (MAX_BODY_BYTES_IN_FLIGHT): past it, a request is answered 503 busy at once, before its
 * body is read, and its sender retries. Each request holds its share from its first byte
 * to the end of its answer, while its body is read, parsed and stored. Without it, 3,000
 * senders of 1 MB bodies at once (seen against npm start) ran collect out of heap in 4.5 s:
 * it crashed, and every request in flight failed with it.
 */
export class BodyBudget {
  private held = 0;

  /**
   * @param maxBytes MAX_BODY_BYTES_IN_FLIGHT
   * @param largestBody MAX_BODY_BYTES: what a body of unknown length (chunked) may reach,
   *   and the most one request holds (a larger announced length is refused with 413 unread)
   */
  constructor(
    private readonly maxBytes: number,
    private readonly largestBody: number,
  ) {}

  readonly middleware = async (ctx: Context, next: Next): Promise<void> => {
    const announced = Number(ctx.get('content-length') || 0);
    const chunked = ctx.get('transfer-encoding') !== '';
    const share = Math.min(chunked ? this.largestBody : announced, this.largestBody);
    if (!(share > 0)) return next();
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
    await next();
  };
}
