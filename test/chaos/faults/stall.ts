// Row 9: a push node stalled 4 s (SIGSTOP, then SIGCONT) while its users stay connected
// with plain `ws` clients that never reconnect by themselves. The node is evicted during
// the stall (its users unbound); when it wakes it must bind them again and replay what
// was routed meanwhile: every message sent during and after the stall must arrive on
// those same sockets.
import { startCluster } from '../../support/cluster.js';
import { mintToken, wsUrlOf } from '../../support/clients.js';
import { LoadGenerator } from '../../support/load.js';
import {
  passingIds,
  quick,
  RawClient,
  settleInboxes,
  slowestMs,
  sleep,
  stopFor,
  timeUntil,
  untilEvicted,
  type Fault,
} from '../common.js';

const STALL_MS = 4000;

export const stallFault: Fault = {
  name: '9. SIGSTOP a push node 4 s under plain ws clients (no reconnect)',
  async run({ sqlitePath }) {
    const users = Array.from({ length: quick ? 20 : 50 }, (_, i) => `stall-user-${i}`);
    const c = await startCluster({
      pushNodes: 2,
      env: { ACK_TIMEOUT: '3s', SQLITE_PATH: sqlitePath },
    });
    const clients: RawClient[] = [];
    const gen = new LoadGenerator(() => c.collect.url, users, quick ? 50 : 100);
    try {
      const victim = c.push[0]!;
      for (const u of users)
        clients.push(await RawClient.connect(wsUrlOf(c, 0), u, await mintToken(c, u, 3600)));
      const byUser = new Map(clients.map((x) => [x.userId, x]));
      gen.start();
      await sleep(2000);
      const t0 = performance.now();
      let detectedMs: number | undefined;
      await stopFor(victim.child.pid!, STALL_MS, async () => {
        detectedMs = await untilEvicted(c, 'push', victim.id, t0, STALL_MS);
      });
      const recoveredMs = await timeUntil(
        async () => (await passingIds(c.deps.consul.addr, 'push')).has(victim.id),
        20_000,
        t0,
      );
      await sleep(3000);
      await gen.stop();
      const outcome = await settleInboxes(gen.sent, (u) => byUser.get(u)?.inbox, 45_000);
      const closed = clients.filter((x) => !x.open);
      const codes = [...new Set(closed.map((x) => x.closeCode))].join(',');
      return {
        detectedMs,
        recoveredMs,
        ...outcome,
        note:
          `${users.length} sockets on the node; ${closed.length} closed by the end` +
          (closed.length ? ` (codes ${codes})` : '') +
          `; slowest delivery ${(slowestMs(gen.sent, (u) => byUser.get(u)?.inbox) / 1000).toFixed(1)} s` +
          '; recovered = passing again',
      };
    } finally {
      await gen.stop();
      for (const x of clients) x.ws.terminate();
      await c.stop();
    }
  },
};
