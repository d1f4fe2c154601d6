import { createPrivateKey, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { Config } from '../core/config.js';
import type { TokenKey } from '../protocol/hops.js';
import { userIdSchema } from '../protocol/user-id.js';
import { InvalidToken, TokenVerifier, type TokenClaims } from './token-verifier.js';

/** The keys auth signs with and verifies with. */
interface KeyPair {
  signKey: KeyObject;
  verifyKey: KeyObject;
}

/**
 * The configured keys as key objects, made once: given a string, jsonwebtoken makes one on
 * every call, which cost 340 µs of a 350 µs HS256 check (80 of 250 µs for ES256).
 */
function keysOf(config: Config): KeyPair {
  if (config.JWT_ALGORITHM === 'HS256') {
    const secret = createSecretKey(Buffer.from(config.secrets.JWT_SECRET, 'utf8'));
    return { signKey: secret, verifyKey: secret };
  }
  try {
    return {
      signKey: createPrivateKey(config.JWT_PRIVATE_KEY ?? ''),
      verifyKey: createPublicKey(config.JWT_PUBLIC_KEY ?? ''),
    };
  } catch (err) {
    throw new Error(
      `JWT_PRIVATE_KEY or JWT_PUBLIC_KEY is not a PEM key: ${(err as Error).message}`,
    );
  }
}

/**
 * Issues and verifies the JWTs clients connect with. The algorithm is pinned (a token
 * signed any other way is refused), `exp` is required, `iss` and `aud` are checked.
 */
export class Tokens {
  private readonly algorithm: Config['JWT_ALGORITHM'];
  private readonly signKey: KeyObject;
  private readonly verifyKey: KeyObject;

  private readonly verifier: TokenVerifier;

  constructor(private readonly config: Config) {
    this.algorithm = config.JWT_ALGORITHM;
    ({ signKey: this.signKey, verifyKey: this.verifyKey } = keysOf(config));
    this.verifier = new TokenVerifier({
      algorithm: this.algorithm,
      key: this.verifyKey,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
    });
  }

  issue(
    userId: string,
    ttlSeconds = this.config.TOKEN_TTL_SECONDS,
  ): { token: string; expiresAt: Date } {
    const subject = userIdSchema.safeParse(userId);
    if (!subject.success) throw new InvalidToken(`not a valid user id: ${subject.error.message}`);
    const nowSeconds = Math.floor(Date.now() / 1000);
    const exp = nowSeconds + ttlSeconds;
    const token = jwt.sign({ exp, iat: nowSeconds }, this.signKey, {
      algorithm: this.algorithm,
      subject: userId,
      issuer: this.config.JWT_ISSUER,
      audience: this.config.JWT_AUDIENCE,
    });
    return { token, expiresAt: new Date(exp * 1000) };
  }

  verify(token: string): TokenClaims {
    return this.verifier.verify(token);
  }

  /** What a push node needs to check tokens itself: the public key, PEM (none for HS256,
   *  whose secret signs too and never leaves auth). */
  published(): TokenKey {
    return {
      algorithm: this.algorithm,
      issuer: this.config.JWT_ISSUER,
      audience: this.config.JWT_AUDIENCE,
      ...(this.algorithm === 'HS256'
        ? {}
        : { publicKey: this.verifyKey.export({ type: 'spki', format: 'pem' }).toString() }),
    };
  }
}
