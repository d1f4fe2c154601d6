import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBinary, PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { startConsulAgent, type ConsulAgent } from '../../src/launcher/consul-agent.js';
import { waitFor } from '../../src/launcher/child.js';
import { loadConfig, type ServiceName } from '../../src/core/config.js';
import { createConsul } from '../../src/core/consul.js';
import { LeaderLock } from '../../src/core/leader.js';
import { ServiceHost } from '../../src/core/service-host.js';
import { testLog } from '../support/silent-log.js';

/**
 * consul.d/production: the server and client agent configs pass `consul validate`
 * (Consul 1.8, the project's target), and the ACL policies grant each service what its
 * code asks of Consul, and no more — checked against a real agent with ACLs on.
 */

const DIR = join(PROJECT_ROOT, 'consul.d', 'production');
const SERVICES: ServiceName[] = ['auth', 'collect', 'dispatch', 'push'];
const LOCKERS: ServiceName[] = ['collect', 'dispatch'];
const text = (file: string): string => readFileSync(join(DIR, file), 'utf8');
/** HCL without its comments, for the checks on what is actually set. */
const live = (file: string): string =>
  text(file)
    .split('\n')
    .filter((l) => !/^\s*(#|\/\/)/.test(l))
    .map((l) => l.replace(/\s+#.*$/, ''))
    .join('\n');

function validate(...paths: string[]): string {
  return execFileSync(findBinary('consul'), ['validate', ...paths], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

describe('consul.d/production agent configs', () => {
  it.each(['server.hcl', 'client.hcl'])('%s passes `consul validate`', (file) => {
    expect(validate(join(DIR, file))).toContain('Configuration is valid');
  });

  it('passes `consul validate` as a folder (the policies subfolder is not agent config)', () => {
    expect(validate(DIR)).toContain('Configuration is valid');
  });

  it.each(['server.hcl', 'client.hcl'])(
    '%s: ACLs deny by default, tokens persisted, gossip encrypted',
    (file) => {
      const hcl = live(file);
      const acl = /acl\s*\{([^}]*)\}/.exec(hcl)?.[1] ?? '';
      expect(acl).toMatch(/enabled\s*=\s*true/);
      expect(acl).toMatch(/default_policy\s*=\s*"deny"/);
      expect(acl).toMatch(/enable_token_persistence\s*=\s*true/);
      expect(hcl).toMatch(/primary_datacenter\s*=\s*"/);
      expect(hcl).toMatch(/data_dir\s*=\s*"/);
      expect(hcl).not.toMatch(/tokens\s*\{/); // tokens are set with the CLI, never in a file
      // The committed key is a placeholder, never a real one: it decodes to instructions.
      const key = /encrypt\s*=\s*"([^"]+)"/.exec(hcl)?.[1] ?? '';
      expect(Buffer.from(key, 'base64').toString('utf8')).toMatch(/^REPLACE-ME/);
      expect(text(file)).toMatch(/PLACEHOLDER/);
      // TLS settings are there, commented out, ready to fill in.
      expect(text(file)).toMatch(/^#\s*ca_file\s*=/m);
      expect(hcl).not.toMatch(/ca_file|cert_file|key_file/);
    },
  );

  it('server.hcl: three servers, the UI the Consul 1.8 way', () => {
    const hcl = live('server.hcl');
    expect(hcl).toMatch(/server\s*=\s*true/);
    expect(hcl).toMatch(/bootstrap_expect\s*=\s*3/);
    expect(hcl).toMatch(/^ui\s*=\s*true/m);
    expect(hcl).toMatch(/retry_join\s*=/);
  });

  it('client.hcl: a client agent that joins the servers', () => {
    const hcl = live('client.hcl');
    expect(hcl).toMatch(/server\s*=\s*false/);
    expect(hcl).not.toMatch(/bootstrap_expect/);
    expect(hcl).toMatch(/retry_join\s*=/);
  });

  it('no file uses ui_config (Consul 1.9+)', () => {
    for (const file of ['server.hcl', 'client.hcl']) expect(live(file)).not.toContain('ui_config');
  });
});

describe('consul.d/production/policies', () => {
  const rule = (hcl: string, kind: string, name: string): string | undefined =>
    new RegExp(
      `${kind}\\s+"${name.replace(/[/.]/g, '\\$&')}"\\s*\\{\\s*policy\\s*=\\s*"(\\w+)"\\s*\\}`,
    ).exec(hcl)?.[1];

  it.each(SERVICES)('%s.hcl grants write on its own service, read on the rest', (svc) => {
    const hcl = live(join('policies', `${svc}.hcl`));
    expect(rule(hcl, 'service', svc)).toBe('write');
    expect(rule(hcl, 'service_prefix', '')).toBe('read');
    expect(rule(hcl, 'node_prefix', '')).toBe('read');
    for (const other of SERVICES.filter((s) => s !== svc))
      expect(rule(hcl, 'service', other)).toBeUndefined();
    const locks = LOCKERS.includes(svc);
    expect(rule(hcl, 'session_prefix', '')).toBe(locks ? 'write' : undefined);
    expect(rule(hcl, 'key_prefix', 'push-cluster/locks/')).toBe(locks ? 'write' : undefined);
    // Nothing beyond that: no operator, acl, agent or keyring rights.
    expect(hcl).not.toMatch(/^\s*(operator|acl|agent|agent_prefix|keyring|event_prefix)\b/m);
  });
});

describe('the policies against a real Consul agent with ACLs (default deny)', () => {
  const MASTER = '6c1ad2c0-6a3b-4a9e-9d8e-2f4b2a7d9e01';
  const log = testLog('consul-production-config');
  let agent: ConsulAgent;
  let confDir: string;
  const tokens = new Map<ServiceName, string>();

  async function api(
    method: string,
    path: string,
    token: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`http://${agent.addr}${path}`, {
      method,
      headers: { 'x-consul-token': token },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const raw = await res.text();
    let json: unknown = raw;
    try {
      json = JSON.parse(raw);
    } catch {
      // plain-text answer (errors)
    }
    return { status: res.status, json };
  }

  beforeAll(async () => {
    confDir = mkdtempSync(join(tmpdir(), 'push-cluster-acl-'));
    // The dev agent with the same ACL settings as consul.d/production; the agent token
    // here is the master token only to keep the test short.
    writeFileSync(
      join(confDir, 'acl.hcl'),
      `acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = true
  tokens {
    master = "${MASTER}"
    agent  = "${MASTER}"
  }
}
`,
    );
    agent = await startConsulAgent({ configDirs: [confDir] });
    for (const svc of SERVICES) {
      const rules = text(join('policies', `${svc}.hcl`));
      // The server parses the rules: a syntax error or an unknown rule is a 400 here.
      const policy = await api('PUT', '/v1/acl/policy', MASTER, {
        Name: `push-cluster-${svc}`,
        Rules: rules,
      });
      expect(policy.status, JSON.stringify(policy.json)).toBe(200);
      const token = await api('PUT', '/v1/acl/token', MASTER, {
        Description: `push-cluster ${svc}`,
        Policies: [{ Name: `push-cluster-${svc}` }],
      });
      expect(token.status).toBe(200);
      tokens.set(svc, (token.json as { SecretID: string }).SecretID);
    }
  });

  afterAll(async () => {
    await agent?.stop();
    if (confDir) rmSync(confDir, { recursive: true, force: true });
  });

  const tokenOf = (svc: ServiceName): string => tokens.get(svc) as string;

  /** A real service host (HTTP server, /health, Registration) using the service's token. */
  function hostFor(svc: ServiceName): ServiceHost {
    const config = loadConfig(svc, {
      CONSUL_HTTP_ADDR: agent.addr,
      CONSUL_HTTP_TOKEN: tokenOf(svc),
      PORT: '0',
      CONSUL_CHECK_INTERVAL: '1s',
      CONSUL_SYNC_INTERVAL: '1s',
      INSTANCE_ID: `${svc}-acl-test`,
    });
    return new ServiceHost({
      config,
      log,
      consul: createConsul(agent.addr, tokenOf(svc)),
      probes: {},
    });
  }

  it.each(SERVICES)(
    '%s registers, passes its check, is discovered, and deregisters with its token',
    async (svc) => {
      const host = hostFor(svc);
      await host.start();
      try {
        await waitFor(
          `${svc} passing, read with the push token (discovery)`,
          async () => {
            const res = await api(
              'GET',
              `/v1/health/service/${svc}?passing`,
              tokenOf(svc === 'push' ? 'dispatch' : 'push'),
            );
            return (
              res.status === 200 &&
              (res.json as { Service: { ID: string } }[]).some((e) => e.Service.ID === host.id)
            );
          },
          15_000,
          100,
        );
      } finally {
        await host.stop();
      }
      await waitFor(
        `${svc} gone from the catalog`,
        async () => {
          const after = await api('GET', `/v1/catalog/service/${svc}`, MASTER);
          return Array.isArray(after.json) && after.json.length === 0;
        },
        5000,
        100,
      );
    },
  );

  it.each(SERVICES)('%s may not register under another service name', async (svc) => {
    const other = SERVICES.find((s) => s !== svc) as ServiceName;
    const res = await api('PUT', '/v1/agent/service/register', tokenOf(svc), {
      ID: `${other}-impostor`,
      Name: other,
      Port: 1,
    });
    expect(res.status).toBe(403);
  });

  it.each(LOCKERS)('%s takes and releases its leader lock (session + KV)', async (svc) => {
    const host = hostFor(svc);
    await host.start();
    const lock = new LeaderLock({
      consul: createConsul(agent.addr, tokenOf(svc)),
      log,
      name: `acl-test-${svc}`,
      serviceId: host.id,
    });
    try {
      lock.start();
      await waitFor(`${svc} to hold the lock`, () => lock.isLeader, 20_000, 100);
      const kv = await api('GET', `/v1/kv/push-cluster/locks/acl-test-${svc}`, MASTER);
      expect((kv.json as { Session?: string }[])[0]?.Session).toBeTruthy();
    } finally {
      await lock.stop();
      await host.stop();
    }
    const kv = await api('GET', `/v1/kv/push-cluster/locks/acl-test-${svc}`, MASTER);
    expect((kv.json as { Session?: string }[])[0]?.Session).toBeUndefined();
  });

  it.each(SERVICES.filter((s) => !LOCKERS.includes(s)))(
    '%s can create no session and write no lock key',
    async (svc) => {
      const session = await api('PUT', '/v1/session/create', tokenOf(svc), { Name: 'x' });
      expect(session.status).toBe(403);
      const kv = await api('PUT', '/v1/kv/push-cluster/locks/x', tokenOf(svc), 'x');
      expect(kv.status).toBe(403);
    },
  );

  it.each(LOCKERS)('%s may write no key outside push-cluster/locks/', async (svc) => {
    const kv = await api('PUT', '/v1/kv/push-cluster/other', tokenOf(svc), 'x');
    expect(kv.status).toBe(403);
  });
});
