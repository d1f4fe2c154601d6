// INTERNAL_PORT: the internal hops on a port of their own, for network policies that
// filter by port. Peers find that port in Consul; Consul checks both ports.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INTERNAL_SECRET_HEADER } from '../../src/protocol/hops.js';
import { KEYS, startCluster, type ServiceProc, type TestCluster } from '../support/cluster.js';
import { mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';
import { rawRequest } from '../support/raw-http.js';

let cluster: TestCluster;

interface CatalogEntry {
  ServiceID: string;
  ServiceMeta: Record<string, string>;
}

async function internalPortOf(proc: ServiceProc): Promise<number> {
  const res = await fetch(`http://${cluster.deps.consul.addr}/v1/catalog/service/${proc.service}`);
  const entries = (await res.json()) as CatalogEntry[];
  const entry = entries.find((e) => e.ServiceID === proc.id);
  return Number(entry?.ServiceMeta.internal_port);
}

const unacked = (port: number, secret?: string) =>
  rawRequest(port, {
    method: 'POST',
    target: '/internal/unacked',
    headers: [
      ['content-type', 'application/json'],
      ...(secret ? ([[INTERNAL_SECRET_HEADER, secret]] as [string, string][]) : []),
    ],
    body: JSON.stringify({ userId: 'nobody', limit: 1 }),
  });

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 1, env: { INTERNAL_PORT: '0' } });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('internal hops on a port of their own (INTERNAL_PORT)', () => {
  it('delivers end to end with every hop on the internal ports', async () => {
    const alice = await TestClient.connect(
      wsUrlOf(cluster, 0),
      'alice',
      await mintToken(cluster, 'alice'),
      { ack: true },
    );
    try {
      await postMessages(cluster, { to: 'alice', payload: 'via internal ports' });
      const [m] = await alice.waitForMessages(1);
      expect(m?.payload).toBe('via internal ports');
    } finally {
      alice.close();
    }
  });

  it('serves internal hops only on the internal port, still behind the secret', async () => {
    const port = await internalPortOf(cluster.collect);
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(cluster.collect.port);
    expect((await unacked(port, KEYS.INTERNAL_SECRET)).status).toBe(200);
    expect((await unacked(port)).status).toBe(401);
    // The public port has no internal route at all, even with the secret.
    expect((await unacked(cluster.collect.port, KEYS.INTERNAL_SECRET)).status).toBe(404);
    // And the internal port has no public route.
    const publicOnInternal = await rawRequest(port, {
      method: 'POST',
      target: '/v1/messages',
      headers: [['authorization', `Bearer ${KEYS.INGEST_API_KEY}`]],
      body: JSON.stringify({ to: 'alice', payload: 1 }),
    });
    expect(publicOnInternal.status).toBe(404);
  });

  it('registers a passing check on each port of every instance', async () => {
    for (const proc of cluster.all()) {
      const res = await fetch(
        `http://${cluster.deps.consul.addr}/v1/health/checks/${proc.service}`,
      );
      const checks = (await res.json()) as { ServiceID: string; Name: string; Status: string }[];
      const own = checks.filter((c) => c.ServiceID === proc.id);
      expect(Object.fromEntries(own.map((c) => [c.Name, c.Status])), proc.id).toEqual({
        [`${proc.service} /health`]: 'passing',
        [`${proc.service} /health (internal port)`]: 'passing',
      });
    }
  });
});
