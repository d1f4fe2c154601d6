// Row 10: Redis paused 5 s (SIGSTOP, then SIGCONT of redis-server) under load. Push nodes
// and dispatch fail their health checks while Redis does not answer; routes are kept,
// but every lookup and binding meanwhile fails.
import { passingIds, stopFor, timeUntil, underLoad, type Fault } from '../common.js';

const PAUSE_MS = 5000;

export const redisPauseFault: Fault = {
  name: '10. SIGSTOP Redis 5 s, then SIGCONT',
  run: ({ sqlitePath }) =>
    underLoad(sqlitePath, async (c) => {
      const addr = c.deps.consul.addr;
      const healthy = async (): Promise<boolean> =>
        (await passingIds(addr, 'push')).size === 2 &&
        (await passingIds(addr, 'dispatch')).size === 2;
      const t0 = performance.now();
      let detectedMs: number | undefined;
      await stopFor(c.deps.redis.child.pid!, PAUSE_MS, async () => {
        detectedMs = await timeUntil(async () => !(await healthy()), PAUSE_MS, t0);
      });
      const recoveredMs = await timeUntil(healthy, 20_000, t0);
      return {
        detectedMs,
        recoveredMs,
        note: 'detected = a push or dispatch instance not passing; recovered = all passing',
      };
    }),
};
