// TOKEN_VERIFY=node (the default) with ES256: push nodes check client tokens with the public
// key auth publishes, so connects neither wait for auth nor fail while it is down; auth stays
// the only signer. With HS256 auth publishes no key and push nodes ask it for every token.
import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';
import { HANDSHAKE_HEADERS, rawRequest } from '../support/raw-http.js';

let cluster: TestCluster;
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const PRIVATE_PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const PUBLIC_PEM = publicKey.export({ type: 'spki', format: 'pem' }).toString();

beforeAll(async () => {
  cluster = await startCluster({
    pushNodes: 1,
    env: { JWT_ALGORITHM: 'ES256', JWT_PRIVATE_KEY: PRIVATE_PEM, JWT_PUBLIC_KEY: PUBLIC_PEM },
  });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

/** The status of an upgrade with this token, and the JSON error code when refused. */
async function upgradeStatus(token: string): Promise<{ status: number; code?: string }> {
  const answer = await rawRequest(cluster.push[0]!.port, {
    target: `/ws?token=${encodeURIComponent(token)}`,
    headers: [...HANDSHAKE_HEADERS],
  });
  if (answer.status === 101) return { status: 101 };
  const body = JSON.parse(answer.body) as { error: { code: string } };
  return { status: answer.status, code: body.error.code };
}

/** push_token_checks_total{by} on the push node. */
async function tokenChecksBy(by: 'node' | 'auth'): Promise<number> {
  const text = await (await fetch(`${cluster.push[0]!.url}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('push_token_checks_total{') && l.includes(`by="${by}"`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('push nodes check tokens with the key auth publishes (ES256)', () => {
  it('auth publishes its public key, never its private one', async () => {
    const res = await fetch(`${cluster.auth.url}/v1/token-key`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({
      algorithm: 'ES256',
      issuer: 'push-cluster',
      audience: 'push-cluster',
      publicKey: PUBLIC_PEM,
    });
    expect(text).not.toContain('PRIVATE');
  });

  it('connects and delivers while auth is down, and still refuses a forged token', async () => {
    const token = await mintToken(cluster, 'alice');
    // Forged: the right claims, signed with a key auth never held.
    const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const forged = jwt.sign({}, forger, {
      algorithm: 'ES256',
      subject: 'alice',
      issuer: 'push-cluster',
      audience: 'push-cluster',
      expiresIn: 3600,
    });
    // The node fetches the key once auth is passing: wait until it checks tokens itself
    // (each try with a fresh token, which no cache holds), then take auth away.
    await waitFor(
      'the node to check a token itself',
      async () => {
        const fresh = await mintToken(cluster, 'probe');
        (await TestClient.connect(wsUrlOf(cluster, 0), 'probe', fresh)).close();
        return (await tokenChecksBy('node')) > 0;
      },
      20_000,
      200,
    );
    await cluster.auth.child.stop(12_000);

    const alice = await TestClient.connect(wsUrlOf(cluster, 0), 'alice', token, { ack: true });
    const [id] = await postMessages(cluster, { to: 'alice', payload: { hello: 'without auth' } });
    const [m] = await alice.waitForMessages(1);
    expect(m).toMatchObject({ id, payload: { hello: 'without auth' } });
    alice.close();
    expect(await tokenChecksBy('node')).toBeGreaterThanOrEqual(2);

    // A signature the node's key does not match goes to auth, the authority: down, so 503.
    expect(await upgradeStatus(forged)).toEqual({ status: 503, code: 'auth_unavailable' });
    expect(await upgradeStatus('not.a.token')).toEqual({ status: 401, code: 'invalid_token' });
    const expired = jwt.sign({}, PRIVATE_PEM, {
      algorithm: 'ES256',
      subject: 'alice',
      issuer: 'push-cluster',
      audience: 'push-cluster',
      expiresIn: -5,
    });
    expect(await upgradeStatus(expired)).toEqual({ status: 401, code: 'invalid_token' });

    await cluster.restart(cluster.auth);
    // Back: auth refuses the forgery itself.
    expect(await upgradeStatus(forged)).toEqual({ status: 401, code: 'invalid_token' });
  }, 60_000);
});
