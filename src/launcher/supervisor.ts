import type { Child } from './child.js';

/** Something the launcher started and can start again: a service, Redis, the Consul agent. */
export interface Restartable {
  readonly child: Child;
  /** Starts a new process in place of the one that exited, on the same port(s). */
  restart(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period. */
  stop(): Promise<void>;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
  /** A process that ran this long before exiting starts again after `initialMs`. */
  resetAfterMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 1000, maxMs: 30_000, resetAfterMs: 60_000 };

/**
 * Watches one process of the launcher: when it exits without being asked to, it says so
 * and, unless restarts are off, starts it again after a delay that doubles with every
 * quick failure (1 s, 2 s, 4 s, … 30 s) and goes back to 1 s once it has run a while.
 */
export class Supervised {
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private startedAt = Date.now();

  constructor(
    readonly name: string,
    readonly target: Restartable,
    private readonly o: {
      restart: boolean;
      say: (line: string) => void;
      backoff?: Backoff;
      /** Runs after each successful restart (e.g. re-registering in a fresh Consul agent). */
      afterRestart?: () => Promise<void>;
    },
  ) {
    this.delayMs = this.backoff.initialMs;
  }

  private get backoff(): Backoff {
    return this.o.backoff ?? DEFAULT_BACKOFF;
  }

  get pid(): number | undefined {
    return this.target.child.pid;
  }

  /** From now on an exit is a failure to report and repair (the start-up checks came first). */
  watch(): void {
    const child = this.target.child;
    void child.waitExit().then((code) => {
      if (this.stopping) return;
      if (Date.now() - this.startedAt >= this.backoff.resetAfterMs)
        this.delayMs = this.backoff.initialMs;
      const how = child.exitSignal
        ? `was killed by ${child.exitSignal}`
        : `exited with code ${code}`;
      const last = child.recentOutput(10);
      this.o.say(
        `${this.name} (pid ${child.pid}) ${how}${last ? `; its last output:\n${last}` : ''}`,
      );
      if (!this.o.restart) {
        this.o.say(`${this.name} is not restarted (RESTART_SERVICES=0); the rest keeps running`);
        return;
      }
      this.schedule();
    });
  }

  private schedule(): void {
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    this.o.say(`restarting ${this.name} in ${delay / 1000} s`);
    this.timer = setTimeout(() => void this.restartNow(), delay);
  }

  private async restartNow(): Promise<void> {
    if (this.stopping) return;
    try {
      this.startedAt = Date.now();
      await this.target.restart();
      if (this.stopping) return void (await this.target.stop());
      await this.o.afterRestart?.();
      this.o.say(`${this.name} restarted (pid ${this.target.child.pid})`);
      this.watch();
    } catch (err) {
      if (this.stopping) return;
      this.o.say(`${this.name} could not be restarted: ${(err as Error).message}`);
      if (this.target.child.running) this.watch();
      else this.schedule();
    }
  }

  /** No more restarts; stops the process (SIGTERM, then SIGKILL after its grace period). */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.target.stop();
  }

  /** No more restarts; SIGKILL at once. */
  kill(): void {
    this.stopping = true;
    clearTimeout(this.timer);
    this.target.child.kill('SIGKILL');
  }
}
