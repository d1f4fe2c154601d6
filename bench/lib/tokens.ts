// Client tokens signed in the bench's own processes exactly as auth issues them (HS256, or
// RS256 or ES256 with a private key; issuer and audience, `sub` = user id): tens of thousands of users
// need no round trip to auth before they connect, and the push node still verifies every one.
import { createPrivateKey, createSecretKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';

export interface SignOptions {
  /** HS256 secret; ignored when privateKey is given. */
  secret: string;
  /** RS256 or ES256 private key (PEM), with its algorithm. */
  privateKey?: string;
  algorithm?: 'RS256' | 'ES256';
  issuer: string;
  audience: string;
  ttlSeconds: number;
}

/** Key objects by their text: given a string, jsonwebtoken makes one per call (340 µs). */
const keys = new Map<string, KeyObject>();

function keyOf(o: SignOptions | undefined): { key: KeyObject; algorithm: jwt.Algorithm } {
  const text = o?.privateKey ?? o?.secret ?? '';
  let key = keys.get(text);
  if (!key) {
    key = o?.privateKey ? createPrivateKey(o.privateKey) : createSecretKey(Buffer.from(text));
    keys.set(text, key);
  }
  return { key, algorithm: o?.privateKey ? (o.algorithm ?? 'ES256') : 'HS256' };
}

export function signToken(user: string, o: SignOptions | undefined): string {
  const { key, algorithm } = keyOf(o);
  return jwt.sign({}, key, {
    algorithm,
    subject: user,
    issuer: o?.issuer,
    audience: o?.audience,
    expiresIn: o?.ttlSeconds ?? 3600,
  });
}
