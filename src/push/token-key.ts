import { createPublicKey } from 'node:crypto';
import { InvalidToken, TokenVerifier, type TokenClaims } from '../auth/token-verifier.js';
import type { Logger } from '../core/logger.js';
import { PeerError, type Peers } from '../core/peers.js';
import { tokenKeyHop, type TokenKey as PublishedKey } from '../protocol/hops.js';

export interface TokenKeyOptions {
  /** auth's instances (only `call` is used). */
  auth: Pick<Peers, 'call'>;
  log: Logger;
  /** How often the key is fetched again once held (auth may have rotated it). */
  refreshMs: number;
  /** How soon a fetch that failed is tried again; the wait doubles with each failure in a
   *  row, up to refreshMs. */
  retryMs: number;
}

/** What the node's own check says about a token. */
export type LocalVerdict =
  | { kind: 'valid'; claims: TokenClaims }
  /** Refused for what the token says (malformed, expired, wrong issuer or audience): auth,
   *  holding the same key, would refuse it too. */
  | { kind: 'invalid'; reason: string }
  /** Only auth can tell: the node holds no key (none fetched yet, or HS256), or the
   *  signature does not match the key held (auth may have a new one). */
  | { kind: 'ask-auth'; keyMismatch: boolean };

/** Failed key fetches in a row logged at debug level only (1 + 2 s of retries). */
const QUIET_FAILURES = 2;

/** jsonwebtoken's messages for a token that the key held cannot judge. */
const KEY_MISMATCH = new Set(['invalid signature', 'invalid algorithm']);

/**
 * auth's published public key (`tokenKeyHop`), held by a push node so that it checks client
 * tokens itself: a connect costs one signature check here (about 80 µs for ES256) instead of
 * a round trip to auth, and a reconnect storm no longer queues on auth. auth stays the
 * authority: it alone signs, it publishes the key, and a token the held key cannot judge
 * (a rotated key) goes to auth and makes the node fetch the key again.
 *
 * With HS256 auth publishes no key (its secret signs too and never leaves auth): every
 * check then goes to auth, as before.
 */
export class TokenKey {
  private verifier: TokenVerifier | undefined;
  private timer: NodeJS.Timeout | undefined;
  private fetching: Promise<void> | undefined;
  private stopped = false;
  private staleAt = 0;
  private failures = 0;

  constructor(private readonly o: TokenKeyOptions) {}

  /** Fetches the key now and keeps it fresh until `stop`. */
  start(): void {
    this.stopped = false;
    void this.refresh();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** True while the node holds a key to check tokens with. */
  get held(): boolean {
    return this.verifier !== undefined;
  }

  verify(token: string): LocalVerdict {
    if (!this.verifier) return { kind: 'ask-auth', keyMismatch: false };
    try {
      return { kind: 'valid', claims: this.verifier.verify(token) };
    } catch (err) {
      if (!(err instanceof InvalidToken)) throw err;
      if (KEY_MISMATCH.has(err.message)) return { kind: 'ask-auth', keyMismatch: true };
      return { kind: 'invalid', reason: err.message };
    }
  }

  /** auth accepted a token whose signature the held key did not match: fetch the key
   *  again, at most once per retry interval however many tokens say so. */
  stale(): void {
    const now = Date.now();
    if (now - this.staleAt < this.o.retryMs) return;
    this.staleAt = now;
    void this.refresh();
  }

  private refresh(): Promise<void> {
    this.fetching ??= this.fetch().finally(() => {
      this.fetching = undefined;
    });
    return this.fetching;
  }

  private async fetch(): Promise<void> {
    let next = this.o.refreshMs;
    try {
      const published = await this.o.auth.call(tokenKeyHop, {});
      this.verifier = verifierOf(published);
      this.failures = 0;
    } catch (err) {
      if (err instanceof PeerError && err.status === 404) {
        // An auth of an older build publishes no key: tokens go to auth, as with HS256.
        this.verifier = undefined;
        this.failures = 0;
      } else {
        this.failures++;
        next = Math.min(this.o.refreshMs, this.o.retryMs * 2 ** (this.failures - 1));
        // The key held stays in use: a key auth once published stays valid until auth
        // rotates it, and then tokens it cannot judge go to auth. The first failures are
        // those of a cluster starting (auth not passing yet): a warning only past them.
        const level = this.failures > QUIET_FAILURES ? 'warn' : 'debug';
        this.o.log[level](
          { err: (err as Error).message, failures: this.failures, retryInMs: next },
          'could not fetch the token key from auth: tokens the node cannot judge go to auth',
        );
      }
    }
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), next);
    this.timer.unref();
  }
}

/** A verifier for a published key; undefined when auth publishes none (HS256). A text that
 *  is not a key throws, and the fetch counts as failed: the key held stays in use. */
function verifierOf(published: PublishedKey): TokenVerifier | undefined {
  if (published.algorithm === 'HS256' || published.publicKey === undefined) return undefined;
  return new TokenVerifier({
    algorithm: published.algorithm,
    key: createPublicKey(published.publicKey),
    issuer: published.issuer,
    audience: published.audience,
  });
}
