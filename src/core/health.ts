import type { Context } from 'koa';
import { withTimeout } from './http.js';

/** A readiness probe: what the process needs to do its job, each answering or throwing. */
export type HealthProbe = () => Promise<void> | void;

export interface HealthOptions {
  probes: Record<string, HealthProbe>;
  /** Checks that take no time (the event loop's worst delay since the last answer), run at
   *  each answer rather than in the rounds; each returns its failure, or undefined. */
  atAnswer?: Record<string, () => string | undefined>;
  isDraining: () => boolean;
  /** How often the probes run (HEALTH_PROBE_MS). */
  intervalMs: number;
  /** How long a probe may take before it counts as failed. */
  probeTimeoutMs: number;
}

/**
 * The instance's health: its probes run on a timer, and `GET /health` answers from their last
 * round, at once. Probed on each request, the answer waited for a Redis round trip (or a
 * store write), whose reply a busy instance reads turns of its event loop later: when the
 * bench's 50,000 clients closed at once, 2 or 3 of the 3 push nodes answered their check past
 * Consul's 1 s timeout; answering from the last round, 1 did (one run each). A stalled or dead
 * process still fails the check: nothing answers it.
 *
 * 200 when every probe passed, else 503 with the reasons, in the probes' order. The body
 * does not change between answers with the same outcome, so Consul's health index moves
 * only when the status does.
 */
export class Health {
  private failures: Record<string, string> = {};
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;

  constructor(private readonly o: HealthOptions) {}

  /** Runs a first round (so that the first answer is a real one), then one every interval. */
  async start(): Promise<void> {
    await this.probeAll();
    this.timer = setInterval(() => void this.probeAll(), this.o.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round of every probe; a round still running is not started twice. */
  private probeAll(): Promise<void> {
    this.round ??= (async () => {
      const names = Object.keys(this.o.probes);
      const results = await Promise.all(
        names.map(async (name) => {
          try {
            const probe = this.o.probes[name] as HealthProbe;
            const ms = this.o.probeTimeoutMs;
            await withTimeout(
              Promise.resolve(probe()),
              ms,
              `${name} did not answer within ${ms}ms`,
            );
            return undefined;
          } catch (err) {
            return (err as Error).message;
          }
        }),
      );
      const failures: Record<string, string> = {};
      names.forEach((name, i) => {
        if (results[i] !== undefined) failures[name] = results[i];
      });
      this.failures = failures;
    })().finally(() => (this.round = undefined));
    return this.round;
  }

  /** GET /health */
  readonly handler = (ctx: Context): void => {
    const failures: Record<string, string> = {};
    if (this.o.isDraining()) failures.lifecycle = 'draining';
    Object.assign(failures, this.failures);
    for (const [name, check] of Object.entries(this.o.atAnswer ?? {})) {
      const failure = check();
      if (failure !== undefined) failures[name] = failure;
    }
    const ok = Object.keys(failures).length === 0;
    ctx.status = ok ? 200 : 503;
    ctx.body = ok ? { status: 'ok' } : { status: 'unavailable', failures };
  };
}
