import { describe, expect, it } from 'vitest';
import { PeerError, PeerUnavailable } from '../../src/core/peers.js';
import { Authenticator } from '../../src/push/authenticator.js';
import { VerifyGate } from '../../src/push/verify-gate.js';
import { FakePeers } from './push-fakes.js';

/** auth answering every token for `alice`, expiring `expiresInMs` after the clock's now. */
function setup(o: { cacheMs?: number; expiresInMs?: number; fail?: () => never } = {}) {
  const clock = { t: Date.parse('2026-01-01T00:00:00Z'), now: () => clock.t };
  const auth = new FakePeers(() => {
    if (o.fail) o.fail();
    return {
      userId: 'alice',
      expiresAt: new Date(clock.t + (o.expiresInMs ?? 3_600_000)).toISOString(),
    };
  });
  const authenticator = new Authenticator({ auth, cacheMs: o.cacheMs ?? 30_000, clock });
  return { clock, auth, authenticator };
}

/** No cache, a gate, and auth answering each check only once `release()` is called. */
function gated(gate: VerifyGate) {
  const waiting: (() => void)[] = [];
  const auth = new FakePeers(async () => {
    await new Promise<void>((r) => waiting.push(r));
    return { userId: 'alice', expiresAt: new Date(Date.now() + 60_000).toISOString() };
  });
  const authenticator = new Authenticator({ auth, cacheMs: 0, gate });
  return { auth, authenticator, release: () => waiting.shift()?.() };
}

describe('Authenticator', () => {
  it('refuses a missing token with 401 missing_token without asking auth', async () => {
    const { auth, authenticator } = setup();
    expect(await authenticator.verify(undefined)).toMatchObject({
      ok: false,
      status: 401,
      code: 'missing_token',
    });
    expect(await authenticator.verify('')).toMatchObject({ status: 401, code: 'missing_token' });
    expect(auth.calls).toHaveLength(0);
  });

  it('asks auth once per token while the answer is cached', async () => {
    const { clock, auth, authenticator } = setup();
    const first = await authenticator.verify('t1');
    expect(first).toEqual({ ok: true, userId: 'alice', expiresAt: clock.t + 3_600_000 });
    clock.t += 29_000;
    expect(await authenticator.verify('t1')).toEqual(first);
    expect(auth.calls).toHaveLength(1);
    await authenticator.verify('t2');
    expect(auth.calls).toHaveLength(2);
  });

  it('asks auth again once TOKEN_CACHE_SECONDS have passed', async () => {
    const { clock, auth, authenticator } = setup({ cacheMs: 30_000 });
    await authenticator.verify('t1');
    clock.t += 30_001;
    await authenticator.verify('t1');
    expect(auth.calls).toHaveLength(2);
  });

  it("never serves a cached answer past the token's expiry", async () => {
    const { clock, auth, authenticator } = setup({ cacheMs: 30_000, expiresInMs: 5000 });
    await authenticator.verify('t1');
    clock.t += 4000;
    await authenticator.verify('t1');
    expect(auth.calls).toHaveLength(1);
    clock.t += 1001;
    await authenticator.verify('t1');
    expect(auth.calls).toHaveLength(2);
  });

  it('asks auth every time when the cache is off (TOKEN_CACHE_SECONDS=0)', async () => {
    const { auth, authenticator } = setup({ cacheMs: 0 });
    await authenticator.verify('t1');
    await authenticator.verify('t1');
    expect(auth.calls).toHaveLength(2);
  });

  it("maps auth's 401 and 400 to 401 invalid_token", async () => {
    for (const status of [401, 400]) {
      const { authenticator } = setup({
        fail: () => {
          throw new PeerError(status, `auth said ${status}`);
        },
      });
      expect(await authenticator.verify('bad')).toMatchObject({
        ok: false,
        status: 401,
        code: 'invalid_token',
      });
    }
  });

  it('maps an unreachable or failing auth to 503 auth_unavailable, and does not cache it', async () => {
    let fail: Error | undefined = new PeerUnavailable('no passing auth instance in Consul');
    const { auth, authenticator } = setup({
      fail: () => {
        if (fail) throw fail;
        return undefined as never;
      },
    });
    expect(await authenticator.verify('t1')).toEqual({
      ok: false,
      status: 503,
      code: 'auth_unavailable',
      message: 'cannot verify tokens right now: no passing auth instance in Consul',
    });
    fail = new PeerError(500, 'auth 500');
    expect(await authenticator.verify('t1')).toMatchObject({
      status: 503,
      code: 'auth_unavailable',
    });
    fail = undefined;
    expect(await authenticator.verify('t1')).toMatchObject({ ok: true, userId: 'alice' });
    expect(auth.calls).toHaveLength(3);
  });

  it('does not ask auth for a client that went away while its check waited for a turn', async () => {
    const { auth, authenticator, release } = gated(new VerifyGate(1, 10));
    const first = authenticator.verify('t1');
    let open = true;
    const second = authenticator.verify('t2', () => open);
    open = false;
    release();
    expect(await first).toMatchObject({ ok: true });
    expect(await second).toMatchObject({ ok: false, status: 503, code: 'client_gone' });
    expect(auth.calls).toHaveLength(1);
  });

  it('refuses with 503 busy when too many checks already wait, without asking auth', async () => {
    const { auth, authenticator, release } = gated(new VerifyGate(1, 0));
    const first = authenticator.verify('t1');
    expect(await authenticator.verify('t2')).toMatchObject({
      ok: false,
      status: 503,
      code: 'busy',
    });
    release();
    await first;
    expect(auth.calls).toHaveLength(1);
  });
});
