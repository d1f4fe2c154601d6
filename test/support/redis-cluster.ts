import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { findBinary } from '../../src/launcher/binaries.js';
import { freePort, launchUntilReady, waitFor, type Child } from '../../src/launcher/child.js';

const run = promisify(execFile);

export interface RedisClusterNode {
  port: number;
  /** `127.0.0.1:<port>` */
  addr: string;
  child: Child;
}

export interface RedisCluster {
  nodes: RedisClusterNode[];
  /** Every node's address, comma-separated: a REDIS_CLUSTER_NODES value. */
  seeds: string;
  /** Runs redis-cli against one node, returning its output. */
  cli(port: number, ...args: string[]): Promise<string>;
  /** The node currently master of the slot. */
  masterOf(slot: number): Promise<RedisClusterNode>;
  /** Waits until every running node says cluster_state:ok. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A throw-away Redis Cluster on loopback: 3 masters and 3 replicas, no persistence, a
 * 2 s node timeout, so that a replica takes over within seconds of its master's death.
 */
export async function startRedisCluster(o: { masters?: number } = {}): Promise<RedisCluster> {
  const server = findBinary('redis-server');
  const redisCli = join(dirname(server), 'redis-cli');
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
  const count = (o.masters ?? 3) * 2;
  const nodes: RedisClusterNode[] = [];
  const cli = async (port: number, ...args: string[]): Promise<string> =>
    (await run(redisCli, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }))
      .stdout;
  const cluster: RedisCluster = {
    nodes,
    seeds: '',
    cli,
    async masterOf(slot) {
      for (const node of nodes.filter((n) => n.child.running)) {
        const text = await cli(node.port, 'CLUSTER', 'NODES').catch(() => '');
        const found = nodes.find((n) => n.port === masterFromNodes(text, slot));
        if (found) return found;
      }
      throw new Error(`no running node knows the master of slot ${slot}`);
    },
    async waitHealthy(timeoutMs = 30_000) {
      await waitFor(
        'cluster_state:ok on every running Redis Cluster node',
        async () => {
          for (const node of nodes.filter((n) => n.child.running)) {
            if (!(await cli(node.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok'))
              return false;
          }
          return true;
        },
        timeoutMs,
        200,
      );
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.child.stop(5000)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    // Each node also listens on a cluster bus port, port + 10,000 unless told: that one was
    // not checked, and a CI run lost a suite to it being taken (EADDRINUSE). Both are chosen
    // free (freePort never hands out one port twice within 15 s).
    const ports: { port: number; bus: number }[] = [];
    for (let i = 0; i < count; i++) ports.push({ port: await freePort(), bus: await freePort() });
    await Promise.all(
      ports.map(async ({ port, bus }) => {
        const child = await launchUntilReady({
          name: `redis-cluster:${port}`,
          command: server,
          args: [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--cluster-enabled',
            'yes',
            '--cluster-port',
            String(bus),
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout',
            '2000',
            '--appendonly',
            'no',
            '--save',
            '',
            '--dir',
            dir,
            '--daemonize',
            'no',
            '--loglevel',
            'warning',
          ],
          what: `redis-server (cluster mode) on port ${port}`,
          ready: async () => (await cli(port, 'PING').catch(() => '')).includes('PONG'),
          timeoutMs: 10_000,
        });
        nodes.push({ port, addr: `127.0.0.1:${port}`, child });
      }),
    );
    nodes.sort((a, b) => a.port - b.port);
    cluster.seeds = nodes.map((n) => n.addr).join(',');
    await run(
      redisCli,
      [
        '--cluster',
        'create',
        ...nodes.map((n) => n.addr),
        '--cluster-replicas',
        '1',
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    );
    await cluster.waitHealthy();
    // Every replica attached and in sync, so that killing a master later loses no
    // acknowledged slot ownership.
    await waitFor(
      'every replica to be connected to its master',
      async () => {
        let replicas = 0;
        for (const node of nodes) {
          const info = await cli(node.port, 'INFO', 'replication');
          if (/role:slave/.test(info) && /master_link_status:up/.test(info)) replicas++;
        }
        return replicas === count / 2;
      },
      30_000,
      200,
    );
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** The port of the live master serving `slot`, from a CLUSTER NODES reply. */
function masterFromNodes(text: string, slot: number): number | undefined {
  for (const line of text.split('\n')) {
    const [, addr, flags, , , , , , ...ranges] = line.trim().split(' ');
    if (!addr || !flags?.split(',').includes('master') || flags.includes('fail')) continue;
    for (const range of ranges) {
      const [from, to = from] = range.split('-').map(Number);
      if (from !== undefined && to !== undefined && slot >= from && slot <= to)
        return Number(addr.split('@')[0]?.split(':').pop());
    }
  }
  return undefined;
}
