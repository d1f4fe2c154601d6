// Consul checks each instance on a listener of its own (HEALTH_PORT) that serves /health
// only, so its check never queues behind client connects on the public port.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { rawRequest } from '../support/raw-http.js';

let cluster: TestCluster;

interface Check {
  ServiceID: string;
  Name: string;
  Status: string;
  Output: string;
}

beforeAll(async () => {
  cluster = await startCluster({ pushNodes: 1 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

/** The port each instance's check calls, read from the check's output in Consul. */
async function checkedPort(service: string, id: string): Promise<number> {
  const res = await fetch(`http://${cluster.deps.consul.addr}/v1/health/checks/${service}`);
  const own = ((await res.json()) as Check[]).filter((c) => c.ServiceID === id);
  expect(own.map((c) => [c.Name, c.Status])).toEqual([[`${service} /health`, 'passing']]);
  return Number(/http:\/\/[^:/]+:(\d+)\/health/.exec(own[0]?.Output ?? '')?.[1]);
}

describe('the health check on a port of its own (HEALTH_PORT)', () => {
  it('checks every instance on a port other than its public one', async () => {
    for (const proc of cluster.all()) {
      const port = await checkedPort(proc.service, proc.id);
      expect(port, proc.id).toBeGreaterThan(0);
      expect(port, proc.id).not.toBe(proc.port);
      const health = await rawRequest(port, { target: '/health' });
      expect(health.status, proc.id).toBe(200);
      expect(JSON.parse(health.body)).toEqual({ status: 'ok' });
    }
  });

  it('answers another method on /health there with 405, as the main port does', async () => {
    const port = await checkedPort('collect', cluster.collect.id);
    for (const p of [port, cluster.collect.port]) {
      const answer = await rawRequest(p, { method: 'POST', target: '/health' });
      expect(answer.status, `port ${p}`).toBe(405);
      expect(answer.headers.allow).toContain('GET');
      expect(JSON.parse(answer.body).error.code).toBe('method_not_allowed');
    }
  });

  it('serves nothing but /health there, in any spelling', async () => {
    const port = await checkedPort('collect', cluster.collect.id);
    const tries: { method?: string; target: string; headers?: [string, string][] }[] = [
      { target: '/metrics' },
      { target: '/HEALTH' },
      { target: '/health/' },
      { target: '//health' },
      {
        method: 'POST',
        target: '/v1/messages',
        headers: [['authorization', `Bearer ${KEYS.INGEST_API_KEY}`]],
      },
      { method: 'POST', target: '/internal/acks' },
    ];
    for (const t of tries) {
      const answer = await rawRequest(port, t);
      expect(answer.status, `${t.method ?? 'GET'} ${t.target}`).toBe(404);
      expect(JSON.parse(answer.body).error.code).toBe('not_found');
    }
  });
});
