import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { createConsul, type ConsulClient } from '../../src/core/consul.js';
import { ServiceView } from '../../src/core/discovery.js';
import { ServiceHost } from '../../src/core/service-host.js';
import { startDeps, waitFor, type Deps } from '../support/deps.js';
import { catalogService, checkStatus } from '../support/consul-http.js';
import { startFixtureInstance } from '../support/fixture-instance.js';
import { testLog } from '../support/silent-log.js';

let deps: Deps;
let consul: ConsulClient;
const log = testLog('registry-test');

function hostFor(meta: () => Record<string, string> = () => ({})): ServiceHost {
  const config = loadConfig('push', {
    CONSUL_HTTP_ADDR: deps.consul.addr,
    PORT: '0',
    CONSUL_SYNC_INTERVAL: '500ms',
  });
  return new ServiceHost({ config, log, consul, probes: {}, meta });
}

async function viewOf(service: string): Promise<ServiceView> {
  const view = new ServiceView({ consul, log, service, waitSeconds: 5 });
  await view.start();
  return view;
}

beforeAll(async () => {
  deps = await startDeps();
  consul = createConsul(deps.consul.addr);
});

afterAll(async () => {
  await deps?.stop();
});

describe('registry core against a real Consul agent', () => {
  it('registers an instance that shows in the catalog with its meta, and its check passes', async () => {
    const host = hostFor(() => ({ ws_url: 'ws://127.0.0.1:1/ws', connections: '0' }));
    await host.start();
    try {
      const entries = await catalogService(deps.consul.addr, 'push');
      const mine = entries.find((e) => e.ServiceID === host.id);
      expect(mine).toBeDefined();
      expect(mine?.ServicePort).toBe(host.port);
      expect(mine?.ServiceAddress).toBe('127.0.0.1');
      expect(mine?.ServiceMeta).toMatchObject({
        version: '0.1.0',
        ws_url: 'ws://127.0.0.1:1/ws',
        connections: '0',
      });
      await waitFor(
        'the /health check to pass',
        async () => (await checkStatus(deps.consul.addr, 'push', host.id)) === 'passing',
        5000,
      );
    } finally {
      await host.stop();
    }
  });

  it('refreshes live meta (the connection count) in the catalog', async () => {
    let connections = 0;
    const host = hostFor(() => ({ connections: String(connections) }));
    await host.start();
    try {
      connections = 42;
      await waitFor(
        'meta connections=42 in the catalog',
        async () => {
          const entries = await catalogService(deps.consul.addr, 'push');
          return entries.find((e) => e.ServiceID === host.id)?.ServiceMeta.connections === '42';
        },
        5000,
      );
    } finally {
      await host.stop();
    }
  });

  it('turns a SIGKILLed instance critical within 5 s and drops it from the passing view', async () => {
    const view = await viewOf('fixture-kill');
    const child = await startFixtureInstance(deps.consul.addr, 'fixture-kill', 'fixture-kill-1');
    try {
      await waitFor(
        'the fixture in the passing view',
        () => view.get('fixture-kill-1') !== undefined,
        5000,
      );
      child.kill('SIGKILL');
      await waitFor(
        'the check to turn critical',
        async () =>
          (await checkStatus(deps.consul.addr, 'fixture-kill', 'fixture-kill-1')) === 'critical',
        5000,
      );
      await waitFor(
        'the fixture to leave the passing view',
        () => view.get('fixture-kill-1') === undefined,
        1000,
      );
    } finally {
      view.stop();
      await child.stop(1000);
    }
  });

  it('deregisters on graceful stop', async () => {
    const host = hostFor();
    await host.start();
    const id = host.id;
    expect((await catalogService(deps.consul.addr, 'push')).map((e) => e.ServiceID)).toContain(id);
    await host.stop();
    expect((await catalogService(deps.consul.addr, 'push')).map((e) => e.ServiceID)).not.toContain(
      id,
    );
  });

  it('discovery follows additions and removals within 1 s of the change in Consul', async () => {
    const view = await viewOf('fixture-view');
    const changes: number[] = [];
    try {
      expect(view.instances()).toEqual([]);
      await consul.agent.service.register({
        id: 'fixture-view-1',
        name: 'fixture-view',
        address: '127.0.0.1',
        port: 9,
        check: { name: 'ttl', ttl: '60s', status: 'passing', timeout: '1s' },
      });
      await waitFor(
        'the new instance in the view',
        () => view.get('fixture-view-1') !== undefined,
        1000,
        10,
      );
      expect(view.get('fixture-view-1')).toMatchObject({
        address: '127.0.0.1',
        port: 9,
        service: 'fixture-view',
      });
      changes.push(view.instances().length);
      await consul.agent.service.deregister('fixture-view-1');
      await waitFor(
        'the instance to leave the view',
        () => view.get('fixture-view-1') === undefined,
        1000,
        10,
      );
      changes.push(view.instances().length);
      expect(changes).toEqual([1, 0]);
    } finally {
      view.stop();
    }
  });

  it('registers again after the local agent restarts and forgets it', async () => {
    const host = hostFor();
    await host.start();
    try {
      await deps.consul.restart();
      await waitFor(
        'the instance back in the catalog after the agent restart',
        async () => {
          const entries = await catalogService(deps.consul.addr, 'push');
          return entries.some((e) => e.ServiceID === host.id);
        },
        10_000,
      );
      await waitFor(
        'its check passing again',
        async () => (await checkStatus(deps.consul.addr, 'push', host.id)) === 'passing',
        5000,
      );
    } finally {
      await host.stop();
    }
  });

  it('keeps the last known instances while Consul is unreachable, and follows it again afterwards', async () => {
    const host = hostFor();
    await host.start();
    const view = await viewOf('push');
    try {
      await waitFor('the instance in the view', () => view.get(host.id) !== undefined, 5000);
      await deps.consul.child.stop(5000);
      await waitFor('the view to notice Consul is gone', () => view.stale, 15_000);
      expect(view.get(host.id)).toBeDefined();
      await deps.consul.restart();
      await waitFor('the view to recover', () => !view.stale, 15_000);
      await waitFor(
        'the instance re-registered and passing in the view',
        () => view.get(host.id) !== undefined,
        10_000,
      );
    } finally {
      view.stop();
      await host.stop();
    }
  });

  it('starts a new watch when Consul ends one with a 400, and follows the service again', async () => {
    // A real HTTP hop in front of the agent that answers the first blocking queries 400,
    // as an agent does to a query it will not serve, then passes everything through.
    let refusals = 2;
    const proxy = createServer((req, res) => {
      if (refusals > 0 && req.url?.startsWith('/v1/health/service/')) {
        refusals--;
        res.writeHead(400).end('Invalid query');
        return;
      }
      const [host, port] = deps.consul.addr.split(':');
      const upstream = request(
        { host, port: Number(port), path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const viaProxy = createConsul(`127.0.0.1:${(proxy.address() as AddressInfo).port}`);
    const view = new ServiceView({ consul: viaProxy, log, service: 'watched', waitSeconds: 2 });
    try {
      await consul.agent.service.register({ id: 'watched-1', name: 'watched', port: 1 });
      await view.start(500);
      await waitFor(
        'the view to show the instance after two refused watches',
        () => view.get('watched-1') !== undefined,
        10_000,
      );
      expect(refusals).toBe(0);
    } finally {
      view.stop();
      proxy.close();
      await consul.agent.service.deregister('watched-1');
    }
  });
});
