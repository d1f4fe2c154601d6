// Our services spread over the application hosts of a Consul cluster (consul-cluster.ts):
// each process binds its host's loopback address, advertises it, and registers with that
// host's client agent. Plus what a test needs to drive them: tokens, ingestion, and
// clients built on the client library from dist/.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import type * as ClientModule from '../../src/client/push-client.js';
import type { PushClient } from '../../src/client/push-client.js';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { Child, freePort, waitFor } from '../../src/launcher/child.js';
import { startRedisServer, type RedisServer } from '../../src/launcher/redis-server.js';
import { DEV_SECRETS, type ServiceName } from '../../src/core/config.js';
import { startConsulCluster, type ConsulCluster, type ConsulHost } from './consul-cluster.js';

const CLI = join(PROJECT_ROOT, 'dist', 'cli.js');

export interface HostService {
  service: ServiceName;
  /** The application host (client agent) it runs on and registers with. */
  host: ConsulHost;
  port: number;
  /** Consul ServiceID */
  id: string;
  url: string;
  child: Child;
}

export interface HostsCluster {
  consul: ConsulCluster;
  redis: RedisServer;
  procs: HostService[];
  of(service: ServiceName): HostService[];
  on(host: ConsulHost): HostService[];
  spawn(service: ServiceName, host: ConsulHost): Promise<HostService>;
  stop(): Promise<void>;
}

/** Passing instances of a service, as Consul's health endpoint answers on `addr`. */
export async function passingIds(addr: string, service: string): Promise<Set<string>> {
  const res = await fetch(`http://${addr}/v1/health/service/${service}?passing=true`, {
    signal: AbortSignal.timeout(2000),
  });
  if (!res.ok) throw new Error(`passing ${service} on ${addr}: ${res.status}`);
  return new Set(((await res.json()) as { Service: { ID: string } }[]).map((e) => e.Service.ID));
}

/**
 * The Consul layout, one Redis, and `layout[service]` = the indexes of the client hosts each
 * service runs on (every collect opens the same SQLite file). Every instance is passing
 * before this resolves; a failed start stops everything it started.
 */
export async function startHostsCluster(
  layout: Record<ServiceName, number[]>,
  o: { env?: Record<string, string> } = {},
): Promise<HostsCluster> {
  const consul = await startConsulCluster();
  const procs: HostService[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'push-cluster-hosts-'));
  let redis: RedisServer | undefined;
  const stopAll = async (graceMs: number): Promise<void> => {
    await Promise.all(procs.map((p) => p.child.stop(graceMs)));
    await redis?.stop();
    await consul.stop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    redis = await startRedisServer();
    const baseEnv = {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'development',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
      REDIS_URL: redis.url,
      CONSUL_SYNC_INTERVAL: '1s',
      SQLITE_PATH: join(dataDir, 'messages.sqlite'),
      ...o.env,
    };
    const spawn = async (service: ServiceName, host: ConsulHost): Promise<HostService> => {
      const port = await freePort(host.address);
      const child = new Child(
        `${service}@${host.address}:${port}`,
        process.execPath,
        [CLI, service, '--port', String(port), '--host', host.address],
        {
          env: { ...baseEnv, CONSUL_HTTP_ADDR: host.addr, ADVERTISE_ADDRESS: host.address },
          echo: process.env.TEST_LOG_LEVEL
            ? (line) => process.stderr.write(`[${service}@${host.address}:${port}] ${line}\n`)
            : undefined,
        },
      );
      const proc: HostService = {
        service,
        host,
        port,
        id: `${service}-${host.address}-${port}`,
        url: `http://${host.address}:${port}`,
        child,
      };
      procs.push(proc);
      try {
        await waitFor(
          `${service} on ${host.address}:${port} to pass its health check at ${host.node}`,
          async () => {
            if (!child.running) throw new Error(`${service} exited:\n${child.recentOutput()}`);
            return (await passingIds(host.addr, service)).has(proc.id);
          },
          // Ten processes start at once on a busy 2-core machine.
          45_000,
          100,
        );
      } catch (err) {
        const checks = await fetch(`http://${host.addr}/v1/health/checks/${service}`)
          .then((r) => r.text())
          .catch((e: Error) => e.message);
        throw new Error(
          `${(err as Error).message}\nits checks at ${host.node}: ${checks}\n` +
            `its output:\n${child.recentOutput()}`,
        );
      }
      return proc;
    };
    const starts: Promise<HostService>[] = [];
    for (const [service, hostIndexes] of Object.entries(layout) as [ServiceName, number[]][])
      for (const i of hostIndexes) starts.push(spawn(service, consul.clients[i]!));
    await Promise.all(starts);
    return {
      consul,
      redis,
      procs,
      of: (service) => procs.filter((p) => p.service === service),
      on: (host) => procs.filter((p) => p.host === host),
      spawn,
      stop: () => stopAll(12_000),
    };
  } catch (err) {
    await stopAll(2000);
    throw err;
  }
}

export async function mintTokenAt(authUrl: string, userId: string): Promise<string> {
  const res = await fetch(`${authUrl}/v1/tokens`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${DEV_SECRETS.AUTH_ADMIN_KEY}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ userId, ttlSeconds: 3600 }),
  });
  if (res.status !== 201) throw new Error(`token for ${userId}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

export async function postMessageAt(
  collectUrl: string,
  to: string,
  payload: unknown,
): Promise<string> {
  const res = await fetch(`${collectUrl}/v1/messages`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${DEV_SECRETS.INGEST_API_KEY}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ to, payload }),
  });
  if (res.status !== 202) throw new Error(`POST /v1/messages: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { ids: string[] }).ids[0]!;
}

/**
 * One client-library client per user (from dist/, with `ws`), connecting through
 * `connectUrl` (one dispatch's /v1/connect), recording the ids that reach each user.
 */
export class LibraryUsers {
  readonly clients = new Map<string, PushClient>();
  readonly received = new Map<string, Set<string>>();
  duplicates = 0;

  constructor(
    private readonly connectUrl: string,
    private readonly token: (userId: string) => Promise<string>,
  ) {}

  async start(users: readonly string[], timeoutMs = 20_000): Promise<void> {
    const file = join(PROJECT_ROOT, 'dist', 'client', 'push-client.js');
    const { PushClient } = (await import(file)) as typeof ClientModule;
    for (const userId of users) {
      const token = await this.token(userId);
      const seen = new Set<string>();
      const client = new PushClient({
        connectUrl: this.connectUrl,
        getToken: () => token,
        WebSocket: WebSocket as unknown as ClientModule.WebSocketConstructor,
        backoff: { initialMs: 100, maxMs: 1000 },
        heartbeatIntervalMs: 2000,
      });
      client.on('message', (m) => void seen.add(m.id));
      client.on('duplicate', () => void this.duplicates++);
      client.on('error', () => undefined);
      client.start();
      this.clients.set(userId, client);
      this.received.set(userId, seen);
    }
    await waitFor('every library client connected', () => this.allOpen(), timeoutMs, 20);
  }

  allOpen(): boolean {
    return [...this.clients.values()].every((c) => c.connectionState === 'open');
  }

  /** Users whose client is open on the push node at `address:port`. */
  usersOn(address: string, port: number): string[] {
    return [...this.clients]
      .filter(
        ([, c]) => c.connectionState === 'open' && c.nodeUrl?.includes(`//${address}:${port}/`),
      )
      .map(([u]) => u);
  }

  stop(): void {
    for (const c of this.clients.values()) c.stop();
  }
}
