import { LRUCache } from 'lru-cache';
import { PeerError, PeerUnavailable, type Peers } from '../core/peers.js';
import { MAX_CACHED_TOKENS, MAX_WAITING_VERIFIES, VERIFY_IN_FLIGHT } from '../core/tuning.js';
import { verifyHop } from '../protocol/hops.js';
import type { LocalVerdict } from './token-key.js';
import { VerifyGate } from './verify-gate.js';

export type AuthOutcome =
  | { ok: true; userId: string; expiresAt: number }
  | { ok: false; status: 401 | 503; code: string; message: string };

interface Verified {
  userId: string;
  expiresAt: number;
}

export interface AuthenticatorOptions {
  /** auth's instances (only `call` is used). */
  auth: Pick<Peers, 'call'>;
  /** TOKEN_CACHE_SECONDS in ms; 0 turns the cache off. */
  cacheMs: number;
  /** Epoch milliseconds, for entries' expiry; tests pass their own clock. */
  clock?: { now(): number };
  /** Admission of checks with auth; tests pass a small one. */
  gate?: VerifyGate;
  /** The node's own check with auth's published key (`TokenKey`); without it, or when it
   *  cannot judge a token, auth is asked. */
  local?: {
    verify(token: string): LocalVerdict;
    stale(): void;
  };
  /** Told who judged each token that was not in the cache. */
  onChecked?: (by: 'node' | 'auth') => void;
}

/**
 * Finds out who a token belongs to: with the key auth publishes when the node holds it
 * (`TokenKey`), else by asking auth. Answers are cached for a short while (never past the
 * token's expiry), so a reconnect storm does not become an auth storm.
 */
export class Authenticator {
  private readonly cache: LRUCache<string, Verified> | undefined;
  private readonly auth: Pick<Peers, 'call'>;
  private readonly cacheMs: number;
  private readonly clock: { now(): number };
  private readonly gate: VerifyGate;
  private readonly local: AuthenticatorOptions['local'];
  private readonly onChecked: (by: 'node' | 'auth') => void;

  constructor(o: AuthenticatorOptions) {
    this.auth = o.auth;
    this.local = o.local;
    this.onChecked = o.onChecked ?? (() => {});
    this.gate = o.gate ?? new VerifyGate(VERIFY_IN_FLIGHT, MAX_WAITING_VERIFIES);
    this.cacheMs = o.cacheMs;
    this.clock = o.clock ?? Date;
    // Entries age on the wall clock that token expiries are read on. One look-up per
    // upgrade: reading the clock every time (ttlResolution 0) costs nothing that matters.
    this.cache =
      o.cacheMs > 0
        ? new LRUCache({
            max: MAX_CACHED_TOKENS,
            ttl: o.cacheMs,
            ttlResolution: 0,
            perf: this.clock,
          })
        : undefined;
  }

  /** `wanted`: false once the client gave up (its socket closed), so that a check that
   *  waited for its turn is not sent for nobody. */
  async verify(
    token: string | undefined,
    wanted: () => boolean = () => true,
  ): Promise<AuthOutcome> {
    if (!token)
      return {
        ok: false,
        status: 401,
        code: 'missing_token',
        message: 'connect with ?token=<jwt> or "Authorization: Bearer <jwt>"',
      };
    const hit = this.cache?.get(token);
    if (hit) return { ok: true, ...hit };
    const verdict = this.local?.verify(token) ?? { kind: 'ask-auth', keyMismatch: false };
    if (verdict.kind !== 'ask-auth') this.onChecked('node');
    if (verdict.kind === 'invalid') return invalidToken(`the token is invalid: ${verdict.reason}`);
    let verified: Verified;
    if (verdict.kind === 'valid') {
      verified = {
        userId: verdict.claims.userId,
        expiresAt: verdict.claims.expiresAt.getTime(),
      };
    } else {
      const asked = await this.ask(token, wanted);
      if (!asked.ok) return asked;
      verified = asked;
      // auth accepted a signature the key held here did not match: auth has a new key.
      if (verdict.keyMismatch) this.local?.stale();
    }
    // An entry lives TOKEN_CACHE_SECONDS, or less when the token expires sooner.
    const ttl = Math.min(this.cacheMs, verified.expiresAt - this.clock.now());
    if (this.cache && ttl > 0) this.cache.set(token, verified, { ttl });
    return { ok: true, ...verified };
  }

  private async ask(
    token: string,
    wanted: () => boolean,
  ): Promise<(Verified & { ok: true }) | (AuthOutcome & { ok: false })> {
    try {
      const turn = await this.gate.run(() => this.auth.call(verifyHop, { token }), wanted);
      if (!turn.ran) return skipped(turn.why);
      this.onChecked('auth');
      const claims = turn.value;
      return { ok: true, userId: claims.userId, expiresAt: Date.parse(claims.expiresAt) };
    } catch (err) {
      if (err instanceof PeerError && (err.status === 401 || err.status === 400))
        this.onChecked('auth');
      return refusal(err);
    }
  }
}

/** A check not sent: the node had too many waiting, or the client had gone meanwhile (no
 *  one reads that answer). */
function skipped(why: 'busy' | 'unwanted'): AuthOutcome & { ok: false } {
  return why === 'busy'
    ? {
        ok: false,
        status: 503,
        code: 'busy',
        message: 'too many connections are being verified on this node: retry shortly',
      }
    : { ok: false, status: 503, code: 'client_gone', message: 'the client closed its socket' };
}

/** Why auth's verdict refuses the upgrade: a bad token is 401, an unreachable auth 503. */
function refusal(err: unknown): AuthOutcome & { ok: false } {
  if (err instanceof PeerError && err.status === 401)
    return invalidToken('the token is invalid or expired');
  if (err instanceof PeerError && err.status === 400) return invalidToken('the token is malformed');
  return {
    ok: false,
    status: 503,
    code: 'auth_unavailable',
    message: `cannot verify tokens right now: ${
      err instanceof PeerUnavailable || err instanceof PeerError ? err.message : String(err)
    }`,
  };
}

function invalidToken(message: string): AuthOutcome & { ok: false } {
  return { ok: false, status: 401, code: 'invalid_token', message };
}
