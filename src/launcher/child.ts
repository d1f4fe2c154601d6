import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import getPort from 'get-port';
import { findOnPath } from './binaries.js';

/**
 * A port that was free a moment ago on `host`. get-port locks each port it hands out for
 * 15 s or more, so two calls in one process never get the same one.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return getPort({ host });
}

/** Polls `probe` until it returns true, failing with `what` when `timeoutMs` runs out. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface ChildOptions extends SpawnOptions {
  echo?: (line: string) => void;
  /**
   * For the launcher's children: its own process group, so that a Ctrl-C in the terminal
   * reaches only the launcher, which then stops its children in order; and, on Linux,
   * started through `setpriv --pdeathsig KILL`, so that the kernel kills the child when
   * the launcher dies, even by SIGKILL (see `TIED_TO_LAUNCHER`). KILL, not TERM: the
   * launcher's death closes the pipes the child logs to, and a service that logs to a
   * closed pipe while it stops never exits (sonic-boom, under pino, retries EPIPE forever
   * in its exit-time flush).
   */
  tiedToLauncher?: boolean;
}

const SETPRIV = process.platform === 'linux' ? findOnPath('setpriv') : undefined;

/** Whether children started with `tiedToLauncher` die with the launcher on this machine. */
export const TIED_TO_LAUNCHER = SETPRIV !== undefined;

/** A child process we started, which we alone stop. */
export class Child {
  readonly proc: ChildProcess;
  private exited: Promise<number | null>;
  private output: string[] = [];
  /** The signal that ended the process, once it has exited by one. */
  exitSignal: NodeJS.Signals | null = null;

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    options: ChildOptions = {},
  ) {
    const { echo, tiedToLauncher, ...spawnOptions } = options;
    if (tiedToLauncher) {
      spawnOptions.detached = true;
      if (SETPRIV) [command, args] = [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]];
    }
    this.proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOptions });
    const keep = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        this.output.push(line);
        if (this.output.length > 200) this.output.shift();
        echo?.(line);
      }
    };
    this.proc.stdout?.on('data', keep);
    this.proc.stderr?.on('data', keep);
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        this.exitSignal = signal;
        resolve(code ?? (signal ? -1 : null));
      }),
    );
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The last lines the process printed, for error messages. */
  recentOutput(lines = 30): string {
    return this.output.slice(-lines).join('\n');
  }

  waitExit(): Promise<number | null> {
    return this.exited;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.proc.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Starts a process and waits until `ready` says it serves. Fails early if it exits, and
 * stops it when it never gets ready, so a failed start leaves nothing running.
 */
export async function launchUntilReady(o: {
  name: string;
  command: string;
  args: string[];
  what: string;
  ready: () => Promise<boolean>;
  timeoutMs: number;
  echo?: (line: string) => void;
  tiedToLauncher?: boolean;
}): Promise<Child> {
  const child = new Child(o.name, o.command, o.args, {
    echo: o.echo,
    tiedToLauncher: o.tiedToLauncher,
  });
  try {
    await waitFor(
      o.what,
      async () => {
        if (!child.running) throw new Error(`${o.name} exited:\n${child.recentOutput()}`);
        return o.ready();
      },
      o.timeoutMs,
    );
  } catch (err) {
    await child.stop(1000);
    throw err;
  }
  return child;
}
