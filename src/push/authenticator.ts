import { PeerError, PeerUnavailable, type Peers } from '../core/peers.js';
import { verifyHop } from '../protocol/hops.js';

export type AuthOutcome =
  | { ok: true; userId: string; expiresAt: number }
  | { ok: false; status: 401 | 503; code: string; message: string };

const MAX_CACHED = 10_000;

/**
 * Asks auth who a token belongs to. Answers are cached for a short while (never past
 * the token's expiry), so a reconnect storm does not become an auth storm.
 */
export class Authenticator {
  private readonly cache = new Map<string, { userId: string; expiresAt: number; until: number }>();

  constructor(
    private readonly auth: Peers,
    private readonly cacheMs: number,
  ) {}

  async verify(token: string | undefined): Promise<AuthOutcome> {
    if (!token)
      return {
        ok: false,
        status: 401,
        code: 'missing_token',
        message: 'connect with ?token=<jwt> or "Authorization: Bearer <jwt>"',
      };
    const now = Date.now();
    const hit = this.cache.get(token);
    if (hit && hit.until > now) return { ok: true, userId: hit.userId, expiresAt: hit.expiresAt };
    try {
      const claims = await this.auth.call(verifyHop, { token });
      const expiresAt = Date.parse(claims.expiresAt);
      if (this.cacheMs > 0) {
        if (this.cache.size >= MAX_CACHED)
          this.cache.delete(this.cache.keys().next().value as string);
        this.cache.set(token, {
          userId: claims.userId,
          expiresAt,
          until: Math.min(now + this.cacheMs, expiresAt),
        });
      }
      return { ok: true, userId: claims.userId, expiresAt };
    } catch (err) {
      if (err instanceof PeerError && err.status === 401) {
        return {
          ok: false,
          status: 401,
          code: 'invalid_token',
          message: 'the token is invalid or expired',
        };
      }
      if (err instanceof PeerError && err.status === 400) {
        return { ok: false, status: 401, code: 'invalid_token', message: 'the token is malformed' };
      }
      const why =
        err instanceof PeerUnavailable || err instanceof PeerError ? err.message : String(err);
      return {
        ok: false,
        status: 503,
        code: 'auth_unavailable',
        message: `cannot verify tokens right now: ${why}`,
      };
    }
  }
}
