import type { ConsulClient as Consul } from './consul.js';
import type { Logger } from './logger.js';
import { WATCH_RESTART_MAX_MS } from './tuning.js';

/** One passing instance of a service, as Consul reports it. */
export interface Instance {
  id: string;
  service: string;
  address: string;
  port: number;
  meta: Record<string, string>;
  tags: string[];
}

interface HealthEntry {
  Service: {
    ID: string;
    Service: string;
    Address: string;
    Port: number;
    Meta: Record<string, string> | null;
    Tags: string[] | null;
  };
  Node: { Address: string };
}

export interface ServiceViewOptions {
  consul: Consul;
  log: Logger;
  service: string;
  /** How long one blocking query may wait for a change. */
  waitSeconds?: number;
  onChange?: (instances: readonly Instance[]) => void;
  /** Called on every failed blocking query (for metrics). */
  onError?: () => void;
}

/**
 * A live in-memory view of the passing instances of one service, kept current with
 * Consul blocking queries, so that no request needs a Consul round-trip. While Consul
 * cannot be reached, the last known set is kept and the watch retries with backoff.
 */
export class ServiceView {
  private list: readonly Instance[] = [];
  private known: readonly Instance[] = [];
  private byId = new Map<string, Instance>();
  private watch: ReturnType<Consul['watch']> | undefined;
  private stopped = false;
  private restarts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private failing = false;
  private firstAnswer: Promise<void>;
  private resolveFirst!: () => void;

  constructor(private readonly o: ServiceViewOptions) {
    this.firstAnswer = new Promise((resolve) => (this.resolveFirst = resolve));
  }

  /** Starts watching; resolves on Consul's first answer, or after `timeoutMs` with an empty view. */
  async start(timeoutMs = 5000): Promise<void> {
    this.stopped = false;
    this.open();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.firstAnswer,
      new Promise<void>((r) => (timer = setTimeout(r, timeoutMs))),
    ]);
    clearTimeout(timer);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.watch?.end();
    this.watch = undefined;
  }

  /**
   * Starts a blocking-query watch. The library retries most errors itself, but ends the
   * watch for good on some (a 400 answer, say): whatever ended it, a new one is started
   * after a backoff (1 s doubling to 30 s), so the view never freezes while we run.
   */
  private open(): void {
    const { consul, service } = this.o;
    const waitSeconds = this.o.waitSeconds ?? 30;
    // Set here, or the client's short default request timeout would cut every blocking
    // query: the library only derives one from `wait` when none is set.
    const timeout = `${Math.ceil(waitSeconds * 1100 + 500)}ms`;
    const watch = consul.watch({
      method: consul.health.service,
      options: { service, passing: 'true', wait: `${waitSeconds}s`, timeout },
      backoffFactor: 100,
      backoffMax: 5000,
    });
    this.watch = watch;
    watch.on('change', (entries: HealthEntry[]) => {
      this.restarts = 0;
      this.update(entries);
    });
    watch.on('error', (err: Error) => {
      this.o.onError?.();
      if (!this.failing) {
        this.o.log.warn(
          { service, err: err.message, kept: this.list.length },
          'consul watch failing: keeping the last known instances',
        );
      }
      this.failing = true;
    });
    watch.on('end', () => {
      if (this.stopped || this.watch !== watch) return;
      this.failing = true;
      const delayMs = Math.min(WATCH_RESTART_MAX_MS, 1000 * 2 ** this.restarts++);
      this.restartTimer = setTimeout(() => {
        if (!this.stopped) this.open();
      }, delayMs);
    });
  }

  get service(): string {
    return this.o.service;
  }

  /** True while Consul cannot be reached and the view shows the last known set. */
  get stale(): boolean {
    return this.failing;
  }

  /** The last non-empty set of passing instances (empty until there was one). */
  lastKnown(): readonly Instance[] {
    return this.known;
  }

  instances(): readonly Instance[] {
    return this.list;
  }

  get(id: string): Instance | undefined {
    return this.byId.get(id);
  }

  private update(entries: HealthEntry[]): void {
    if (this.failing) this.o.log.info({ service: this.o.service }, 'consul watch recovered');
    this.failing = false;
    const next = entries.map((e): Instance => ({
      id: e.Service.ID,
      service: e.Service.Service,
      address: e.Service.Address || e.Node.Address,
      port: e.Service.Port,
      meta: e.Service.Meta ?? {},
      tags: e.Service.Tags ?? [],
    }));
    const before = [...this.byId.keys()].sort().join(',');
    this.list = next;
    if (next.length > 0) this.known = next;
    this.byId = new Map(next.map((i) => [i.id, i]));
    const after = [...this.byId.keys()].sort().join(',');
    if (before !== after)
      this.o.log.info(
        { service: this.o.service, instances: after.split(',').filter(Boolean) },
        'passing instances changed',
      );
    this.resolveFirst();
    this.o.onChange?.(this.list);
  }
}
