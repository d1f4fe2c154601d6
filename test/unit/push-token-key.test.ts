import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PeerError, PeerUnavailable } from '../../src/core/peers.js';
import { tokenKeyHop, verifyHop, type TokenKey as Published } from '../../src/protocol/hops.js';
import { Authenticator } from '../../src/push/authenticator.js';
import { TokenKey } from '../../src/push/token-key.js';
import { testLog } from '../support/silent-log.js';
import { FakePeers } from './push-fakes.js';

afterEach(() => vi.useRealTimers());

const ISSUER = 'push-cluster';
const AUDIENCE = 'push-cluster';

function keyPair(): { privateKey: KeyObject; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

function sign(privateKey: KeyObject, user: string, o: jwt.SignOptions = {}): string {
  return jwt.sign({}, privateKey, {
    algorithm: 'ES256',
    subject: user,
    issuer: ISSUER,
    audience: AUDIENCE,
    expiresIn: 3600,
    ...o,
  });
}

/** auth publishing `published()` and accepting every token for `alice` unless `refuse`. */
function setup(published: () => Published | Error) {
  const auth = new FakePeers((path) => {
    if (path === tokenKeyHop.path) {
      const p = published();
      if (p instanceof Error) throw p;
      return p;
    }
    if (path === verifyHop.path)
      return { userId: 'alice', expiresAt: new Date(Date.now() + 60_000).toISOString() };
    throw new Error(`unexpected ${path}`);
  });
  const tokenKey = new TokenKey({
    auth,
    log: testLog('token-key'),
    refreshMs: 60_000,
    retryMs: 50,
  });
  const authenticator = new Authenticator({ auth, cacheMs: 0, local: tokenKey });
  return { auth, tokenKey, authenticator };
}

async function until(what: string, ok: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A node that has fetched `k`'s public key from auth. */
async function holding(k: { publicPem: string }) {
  const parts = setup(() => ({
    algorithm: 'ES256',
    issuer: ISSUER,
    audience: AUDIENCE,
    publicKey: k.publicPem,
  }));
  parts.tokenKey.start();
  await until('the key', () => parts.tokenKey.held);
  return parts;
}

describe('TokenKey: push nodes check tokens with the key auth publishes', () => {
  it('accepts a token signed with the published key without asking auth', async () => {
    const k = keyPair();
    const { auth, tokenKey, authenticator } = await holding(k);
    const outcome = await authenticator.verify(sign(k.privateKey, 'bob'));
    expect(outcome).toMatchObject({ ok: true, userId: 'bob' });
    expect(auth.callsTo(verifyHop.path)).toHaveLength(0);
    tokenKey.stop();
  });

  it('refuses an expired, foreign-audience or malformed token itself with 401 invalid_token', async () => {
    const k = keyPair();
    const { auth, tokenKey, authenticator } = await holding(k);
    const expired = sign(k.privateKey, 'bob', { expiresIn: -10 });
    const foreign = sign(k.privateKey, 'bob', { audience: 'someone-else' });
    for (const token of [expired, foreign, 'not.a.jwt', 'x'.repeat(5000)]) {
      expect(await authenticator.verify(token)).toMatchObject({
        ok: false,
        status: 401,
        code: 'invalid_token',
      });
    }
    expect(auth.callsTo(verifyHop.path)).toHaveLength(0);
    tokenKey.stop();
  });

  it('refuses a token signed with HS256 or alg none, whatever its claims', async () => {
    const k = keyPair();
    const { tokenKey, authenticator } = await holding(k);
    // Signed with the public key's text as an HMAC secret: the classic confusion attack.
    const confused = jwt.sign({}, k.publicPem, {
      algorithm: 'HS256',
      subject: 'bob',
      issuer: ISSUER,
      audience: AUDIENCE,
      expiresIn: 3600,
    });
    const none = jwt.sign({}, '', {
      algorithm: 'none',
      subject: 'bob',
      issuer: ISSUER,
      audience: AUDIENCE,
      expiresIn: 3600,
    });
    // Neither reaches a verdict here: auth, the authority, is asked (and our fake auth
    // says alice, not bob, which shows the node did not take the claims for itself).
    for (const token of [confused, none]) {
      const outcome = await authenticator.verify(token);
      expect(outcome.ok && outcome.userId).not.toBe('bob');
    }
    tokenKey.stop();
  });

  it('asks auth for a token signed with another key, and then fetches the key again', async () => {
    const oldKey = keyPair();
    const newKey = keyPair();
    let current = oldKey;
    const { auth, tokenKey, authenticator } = setup(() => ({
      algorithm: 'ES256',
      issuer: ISSUER,
      audience: AUDIENCE,
      publicKey: current.publicPem,
    }));
    tokenKey.start();
    await until('the key', () => tokenKey.held);
    current = newKey; // auth rotated its key
    const outcome = await authenticator.verify(sign(newKey.privateKey, 'bob'));
    // auth's answer counts (the fake auth names alice).
    expect(outcome).toMatchObject({ ok: true, userId: 'alice' });
    expect(auth.callsTo(verifyHop.path)).toHaveLength(1);
    await until('a second key fetch', () => auth.callsTo(tokenKeyHop.path).length >= 2);
    await until(
      'the new key in use',
      () => tokenKey.verify(sign(newKey.privateKey, 'x')).kind === 'valid',
    );
    expect(await authenticator.verify(sign(newKey.privateKey, 'carol'))).toMatchObject({
      ok: true,
      userId: 'carol',
    });
    expect(auth.callsTo(verifyHop.path)).toHaveLength(1);
    tokenKey.stop();
  });

  it('asks auth for every token while auth publishes no key (HS256), without refetching per token', async () => {
    const { auth, tokenKey, authenticator } = setup(() => ({
      algorithm: 'HS256',
      issuer: ISSUER,
      audience: AUDIENCE,
    }));
    tokenKey.start();
    await until('the first fetch', () => auth.callsTo(tokenKeyHop.path).length === 1);
    for (let i = 0; i < 5; i++) {
      expect(await authenticator.verify(`t${i}`)).toMatchObject({ ok: true, userId: 'alice' });
    }
    expect(auth.callsTo(verifyHop.path)).toHaveLength(5);
    expect(auth.callsTo(tokenKeyHop.path)).toHaveLength(1);
    tokenKey.stop();
  });

  it('keeps trying to fetch the key while auth is unreachable, asking auth meanwhile', async () => {
    const k = keyPair();
    let reachable = false;
    const { auth, tokenKey } = setup(() =>
      reachable
        ? { algorithm: 'ES256', issuer: ISSUER, audience: AUDIENCE, publicKey: k.publicPem }
        : new PeerUnavailable('no auth instance is passing'),
    );
    tokenKey.start();
    await until('two failed fetches', () => auth.callsTo(tokenKeyHop.path).length >= 2);
    expect(tokenKey.verify(sign(k.privateKey, 'bob'))).toEqual({
      kind: 'ask-auth',
      keyMismatch: false,
    });
    reachable = true;
    await until('the key', () => tokenKey.held);
    expect(tokenKey.verify(sign(k.privateKey, 'bob'))).toMatchObject({ kind: 'valid' });
    tokenKey.stop();
  });

  it('waits twice as long after each failed fetch, up to the refresh interval', async () => {
    vi.useFakeTimers();
    const auth = new FakePeers(() => {
      throw new PeerUnavailable('no auth instance is passing');
    });
    const tokenKey = new TokenKey({ auth, log: testLog('token-key'), refreshMs: 400, retryMs: 50 });
    tokenKey.start();
    // Fetches at 0, 50, 150 (+100), 350 (+200), 750 (+400), 1150 (+400).
    const fetchesBy = async (ms: number) => {
      await vi.advanceTimersByTimeAsync(ms);
      return auth.calls.length;
    };
    expect(await fetchesBy(1)).toBe(1);
    expect(await fetchesBy(50)).toBe(2);
    expect(await fetchesBy(100)).toBe(3);
    expect(await fetchesBy(200)).toBe(4);
    expect(await fetchesBy(400)).toBe(5);
    expect(await fetchesBy(400)).toBe(6);
    tokenKey.stop();
  });

  it('takes an auth that knows no token-key hop (404) for one that publishes no key', async () => {
    const { auth, tokenKey, authenticator } = setup(() => new PeerError(404, 'not_found'));
    tokenKey.start();
    await until('the first fetch', () => auth.callsTo(tokenKeyHop.path).length === 1);
    expect(await authenticator.verify('t')).toMatchObject({ ok: true, userId: 'alice' });
    await new Promise((r) => setTimeout(r, 80));
    // Not asked again every retry interval: the next fetch is a refresh away.
    expect(auth.callsTo(tokenKeyHop.path)).toHaveLength(1);
    tokenKey.stop();
  });

  it('keeps the key it holds when auth sends one that is not a key', async () => {
    const k = keyPair();
    let publicKey = k.publicPem;
    const { tokenKey } = setup(() => ({
      algorithm: 'ES256',
      issuer: ISSUER,
      audience: AUDIENCE,
      publicKey,
    }));
    tokenKey.start();
    await until('the key', () => tokenKey.held);
    publicKey = '-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n';
    tokenKey.stale();
    await new Promise((r) => setTimeout(r, 100));
    expect(tokenKey.verify(sign(k.privateKey, 'bob'))).toMatchObject({ kind: 'valid' });
    tokenKey.stop();
  });
});
