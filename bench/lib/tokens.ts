// Client tokens signed in the bench's own processes exactly as auth issues them (HS256,
// issuer and audience, `sub` = user id): tens of thousands of users need no round trip to
// auth before they connect, and the push node still verifies every one.
import jwt from 'jsonwebtoken';

export interface SignOptions {
  secret: string;
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

export function signToken(user: string, o: SignOptions | undefined): string {
  return jwt.sign({}, o?.secret ?? '', {
    algorithm: 'HS256',
    subject: user,
    issuer: o?.issuer,
    audience: o?.audience,
    expiresIn: o?.ttlSeconds ?? 3600,
  });
}
