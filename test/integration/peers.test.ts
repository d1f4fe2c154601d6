import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsulAgent, type ConsulAgent } from '../../src/launcher/consul-agent.js';
import { waitFor } from '../../src/launcher/child.js';
import { createConsul, type ConsulClient } from '../../src/core/consul.js';
import { ServiceView } from '../../src/core/discovery.js';
import { PeerUnavailable, Peers } from '../../src/core/peers.js';
import { z } from 'zod';
import { INTERNAL_SECRET_HEADER, type Hop } from '../../src/protocol/hops.js';
import { testLog } from '../support/silent-log.js';

let agent: ConsulAgent;
let consul: ConsulClient;
let server: Server;
const seenSecrets: (string | undefined)[] = [];

beforeAll(async () => {
  agent = await startConsulAgent();
  consul = createConsul(agent.addr);
  server = createServer((req, res) => {
    seenSecrets.push(req.headers[INTERNAL_SECRET_HEADER] as string | undefined);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ echo: req.url }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  await consul.agent.service.register({
    id: 'peer-1',
    name: 'peer',
    address: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    check: { name: 'ttl', checkid: 'peer-1-ttl', ttl: '60s', status: 'passing', timeout: '1s' },
  });
});

afterAll(async () => {
  server?.close();
  await agent?.stop();
});

const echoHop = (path: string): Hop<{ n: number }, { echo: string }> => ({
  path,
  access: 'internal',
  request: z.object({ n: z.number() }),
  response: z.object({ echo: z.string() }),
});

describe('Peers', () => {
  it('calls a passing instance with the internal secret, and falls back to the last known one only when asked', async () => {
    const view = new ServiceView({
      consul,
      log: testLog('peers'),
      service: 'peer',
      waitSeconds: 5,
    });
    await view.start();
    try {
      await waitFor('the peer in the view', () => view.get('peer-1') !== undefined);
      const strict = new Peers({ view, secret: 's3cret', timeoutMs: 2000 });
      const lenient = new Peers({
        view,
        secret: 's3cret',
        timeoutMs: 2000,
        whenNonePassing: 'try-last-known',
      });
      expect(await strict.call(echoHop('/x'), { n: 1 })).toEqual({ echo: '/x' });
      expect(seenSecrets).toEqual(['s3cret']);

      await consul.agent.check.fail({ id: 'peer-1-ttl' });
      await waitFor('the peer out of the passing view', () => view.instances().length === 0);
      await expect(strict.call(echoHop('/y'), { n: 2 })).rejects.toBeInstanceOf(PeerUnavailable);
      expect(await lenient.call(echoHop('/z'), { n: 3 })).toEqual({ echo: '/z' });
      strict.close();
      lenient.close();
    } finally {
      view.stop();
    }
  });
});
