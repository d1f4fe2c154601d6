// Parent ↔ worker plumbing for the benchmark: every worker is a child process forked with
// `node --import tsx`, talking JSON-ish (structured clone) messages over the IPC channel.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = fileURLToPath(new URL('../', import.meta.url));
export const ROOT_DIR = fileURLToPath(new URL('../../', import.meta.url));

interface Request {
  id: number;
  cmd: string;
  args: unknown;
}
interface Reply {
  re: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}
interface WorkerEvent {
  ev: string;
  data: unknown;
}

/** Every process the benchmark started and has not seen exit: killed on the way out. */
const live = new Set<ChildProcess>();

/** Last resort (an exception, Ctrl-C, the end): SIGKILL whatever is still running. */
export function killAllWorkers(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  live.clear();
}

/** A forked bench worker (`bench/workers/<name>.ts`) answering requests over IPC. */
export class Worker {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  private readonly listeners = new Map<string, ((data: unknown) => void)[]>();
  private readonly exited: Promise<void>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    live.add(child);
    child.on('message', (m: Reply | WorkerEvent) => {
      if ('re' in m) {
        const p = this.pending.get(m.re);
        if (!p) return;
        this.pending.delete(m.re);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.result);
        else p.reject(new Error(`${name}: ${m.error}`));
      } else {
        for (const l of this.listeners.get(m.ev) ?? []) l(m.data);
      }
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        for (const [, p] of this.pending) {
          clearTimeout(p.timer);
          p.reject(new Error(`${name} exited (${code ?? signal}) before answering`));
        }
        this.pending.clear();
        resolve();
      }),
    );
  }

  /** Forks `bench/workers/<script>.ts` and waits for its `ready` event. */
  static async start(
    name: string,
    script: string,
    env: Record<string, string> = {},
  ): Promise<Worker> {
    const child = fork(`${BENCH_DIR}workers/${script}.ts`, [], {
      cwd: ROOT_DIR,
      execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
      // Worker output goes to our stderr: stdout carries only the report.
      stdio: ['ignore', 2, 2, 'ipc'],
      serialization: 'advanced',
      env: { ...process.env, ...env, BENCH_WORKER_NAME: name },
    });
    const worker = new Worker(name, child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start in 30 s`)), 30_000);
      worker.on('ready', () => {
        clearTimeout(timer);
        resolve();
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} while starting`));
      });
    });
    return worker;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  on(ev: string, listener: (data: unknown) => void): void {
    const list = this.listeners.get(ev) ?? [];
    list.push(listener);
    this.listeners.set(ev, list);
  }

  /** A one-way message (no answer awaited). */
  tell(cmd: string, args: unknown = {}): void {
    if (this.child.connected) this.child.send({ id: 0, cmd, args } satisfies Request);
  }

  request<T>(cmd: string, args: unknown = {}, timeoutMs = 60_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      if (!this.child.connected) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new Error(`${this.name} is gone`));
        return;
      }
      this.child.send({ id, cmd, args } satisfies Request);
    });
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---- worker side --------------------------------------------------------------

type Handler = (args: never) => unknown;

/**
 * Inside a worker: answers the parent's requests with `handlers`, announces `ready`, and
 * exits as soon as the parent goes away (its IPC channel closes), so nothing outlives a run.
 */
export function serve(handlers: Record<string, Handler>): void {
  if (!process.send) throw new Error('a bench worker must be forked with an IPC channel');
  process.on('message', (m: Request) => {
    const handler = handlers[m.cmd];
    void (async () => {
      try {
        if (!handler) throw new Error(`unknown command ${m.cmd}`);
        const result = await (handler as (a: unknown) => unknown)(m.args);
        if (m.id !== 0) process.send?.({ re: m.id, ok: true, result } satisfies Reply);
      } catch (err) {
        if (m.id !== 0)
          process.send?.({ re: m.id, ok: false, error: (err as Error).stack } satisfies Reply);
        else process.stderr.write(`${process.env.BENCH_WORKER_NAME}: ${(err as Error).stack}\n`);
      }
    })();
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => undefined); // the parent decides when we stop
  emit('ready', {});
}

export function emit(ev: string, data: unknown): void {
  process.send?.({ ev, data } satisfies WorkerEvent);
}
