import jwt from 'jsonwebtoken';
import type { Config } from '../core/config.js';
import { userIdSchema } from '../protocol/user-id.js';

export interface TokenClaims {
  userId: string;
  expiresAt: Date;
}

export class InvalidToken extends Error {}

/**
 * Issues and verifies the JWTs clients connect with. The algorithm is pinned (a token
 * signed any other way is refused), `exp` is required, `iss` and `aud` are checked.
 */
export class Tokens {
  private readonly algorithm: jwt.Algorithm;
  private readonly signKey: jwt.Secret;
  private readonly verifyKey: jwt.Secret;

  constructor(private readonly config: Config) {
    this.algorithm = config.JWT_ALGORITHM;
    if (this.algorithm === 'HS256') {
      this.signKey = this.verifyKey = config.secrets.JWT_SECRET;
    } else {
      this.signKey = config.JWT_PRIVATE_KEY ?? '';
      this.verifyKey = config.JWT_PUBLIC_KEY ?? '';
    }
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
    let payload: jwt.JwtPayload | string;
    try {
      payload = jwt.verify(token, this.verifyKey, {
        algorithms: [this.algorithm],
        issuer: this.config.JWT_ISSUER,
        audience: this.config.JWT_AUDIENCE,
      });
    } catch (err) {
      throw new InvalidToken((err as Error).message);
    }
    if (typeof payload === 'string' || typeof payload.sub !== 'string') {
      throw new InvalidToken('token has no subject');
    }
    // A subject that ingestion could never address is no user of ours, however it was signed.
    if (!userIdSchema.safeParse(payload.sub).success) {
      throw new InvalidToken('token subject is not a valid user id');
    }
    if (typeof payload.exp !== 'number') throw new InvalidToken('token has no expiry');
    return { userId: payload.sub, expiresAt: new Date(payload.exp * 1000) };
  }
}
