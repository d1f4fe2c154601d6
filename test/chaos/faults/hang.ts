// Row 13: a push node hung (SIGSTOP for 60 s, 15 s with --quick, then SIGCONT) while its
// clients use the client library from dist/. With WS_PING_INTERVAL 2 s its clients must
// notice the silent node and move to another one within 2 × the ping interval; nothing
// sent meanwhile may be lost.
import { startCluster } from '../../support/cluster.js';
import { mintToken } from '../../support/clients.js';
import { LoadGenerator } from '../../support/load.js';
import {
  LibClients,
  passingIds,
  quick,
  settleInboxes,
  slowestMs,
  sleep,
  stopFor,
  timeUntil,
  untilEvicted,
  type Fault,
} from '../common.js';

const PING_MS = 2000;
const HANG_MS = quick ? 15_000 : 60_000;

export const hangFault: Fault = {
  name: `13. SIGSTOP a push node ${HANG_MS / 1000} s under library clients (WS_PING_INTERVAL 2s)`,
  async run({ sqlitePath }) {
    const users = Array.from({ length: quick ? 20 : 50 }, (_, i) => `hang-user-${i}`);
    const c = await startCluster({
      pushNodes: 2,
      env: { ACK_TIMEOUT: '3s', SQLITE_PATH: sqlitePath, WS_PING_INTERVAL: `${PING_MS}ms` },
    });
    // The client's heartbeat at the same interval as the node's pings (2 s).
    const lib = new LibClients(`${c.dispatch.url}/v1/connect`, (u) => mintToken(c, u, 3600), {
      heartbeatIntervalMs: PING_MS,
    });
    const gen = new LoadGenerator(() => c.collect.url, users, quick ? 50 : 100);
    try {
      await lib.start(users);
      gen.start();
      await sleep(2000);
      const victim = c.push[0]!;
      const stranded = lib.usersOn(victim.port);
      const t0 = performance.now();
      let detectedMs: number | undefined;
      let movedMs: number | undefined;
      const movedAt = new Map<string, number>();
      await stopFor(victim.child.pid!, HANG_MS, async () => {
        const evicted = untilEvicted(c, 'push', victim.id, t0);
        movedMs = await timeUntil(
          () =>
            stranded.every((u) => {
              const x = lib.clients.get(u)!;
              const moved =
                x.connectionState === 'open' && !x.nodeUrl?.includes(`:${victim.port}/`);
              if (moved && !movedAt.has(u)) movedAt.set(u, performance.now() - t0);
              return moved;
            }),
          HANG_MS - 1000,
          t0,
        );
        detectedMs = await evicted;
      });
      const recoveredMs = await timeUntil(
        async () => (await passingIds(c.deps.consul.addr, 'push')).has(victim.id),
        20_000,
        t0,
      );
      await sleep(2000);
      await gen.stop();
      const outcome = await settleInboxes(gen.sent, (u) => lib.inboxes.get(u), 45_000);
      const limit = 2 * PING_MS;
      const each = [...movedAt.values()].sort((a, b) => a - b);
      const median = each[Math.floor(each.length / 2)];
      const moved =
        movedMs === undefined
          ? `${each.length} moved during the ${HANG_MS / 1000} s hang`
          : `all moved after ${(movedMs / 1000).toFixed(2)} s (median ${((median ?? 0) / 1000).toFixed(2)} s)`;
      return {
        detectedMs,
        recoveredMs: movedMs,
        ...outcome,
        note:
          `${stranded.length} clients on the hung node, ${moved} (limit ${limit / 1000} s; client heartbeatIntervalMs ${PING_MS}, hang ~2 s after the clients opened: just after a heartbeat round, the worst case); ` +
          `slowest delivery ${(slowestMs(gen.sent, (u) => lib.inboxes.get(u)) / 1000).toFixed(1)} s; ` +
          `node passing again after ${recoveredMs === undefined ? '—' : `${(recoveredMs / 1000).toFixed(2)} s`}`,
        problem:
          stranded.length === 0
            ? 'no client was on the hung node'
            : movedMs !== undefined && movedMs <= limit
              ? undefined
              : `clients not moved within ${limit / 1000} s`,
      };
    } finally {
      await gen.stop();
      lib.stop();
      await c.stop();
    }
  },
};
