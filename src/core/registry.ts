import type { ConsulClient as Consul } from './consul.js';
import type { Logger } from './logger.js';

export interface RegistrationOptions {
  consul: Consul;
  log: Logger;
  /** Unique per instance: Consul's ServiceID. */
  id: string;
  name: string;
  address: string;
  port: number;
  /** The port whose /health Consul checks: a listener of its own, which client connects
   *  do not queue ahead of (HEALTH_PORT). */
  healthPort: number;
  /** Another port this instance serves (internal hops), checked by Consul as well. */
  internalPort?: number;
  tags?: string[];
  /** Read at every sync, so live values (a push node's connection count) reach Consul. */
  meta: () => Record<string, string>;
  checkIntervalMs: number;
  checkTimeoutMs: number;
  /** Consecutive failed checks before critical (CONSUL_CHECK_FAILURES): more rides out
   *  slow answers from a busy instance, but keeps a hung one in routing longer. */
  checkFailures: number;
  deregisterAfterMs: number;
  /** How often to confirm the agent still knows this instance and to refresh its meta. */
  syncIntervalMs: number;
  /** Called on every failed call to the agent (for metrics). */
  onError?: () => void;
}

const seconds = (ms: number): string => `${Math.max(1, Math.round(ms / 1000))}s`;
const msText = (ms: number): string => `${ms}ms`;

/**
 * This instance's entry in the registry (Consul). Registers with the local agent,
 * re-registers when the agent has forgotten it (agent restart) or when its meta
 * changed, and deregisters on stop.
 */
export class Registration {
  private timer: NodeJS.Timeout | undefined;
  private lastMeta = '';
  private syncing: Promise<void> | undefined;
  private agentDown = false;
  /** When the agent stopped answering (Date.now()), while it does not answer. */
  private unreachableSince: number | undefined;

  constructor(private readonly o: RegistrationOptions) {}

  async start(): Promise<void> {
    await this.register();
    this.timer = setInterval(() => void this.sync(), this.o.syncIntervalMs);
    this.timer.unref();
  }

  /** Leaves routing at once: Consul drops the instance from every passing view. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.syncing;
    try {
      await this.o.consul.agent.service.deregister(this.o.id);
      this.o.log.info({ id: this.o.id }, 'deregistered from consul');
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'could not deregister from consul');
    }
  }

  /** How long the local agent has not answered (0 while it answers). Without its agent an
   *  instance is out of routing — its checks are not run, its entry is gone or critical —
   *  however well it serves. */
  agentUnreachableMs(now = Date.now()): number {
    return this.unreachableSince === undefined ? 0 : now - this.unreachableSince;
  }

  /** Asks the agent now (and registers again if it forgot this instance), instead of
   *  waiting for the next sync: before acting on `agentUnreachableMs`, which is only as
   *  fresh as the last sync. */
  sync(): Promise<void> {
    this.syncing ??= this.syncOnce().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    try {
      const known = await this.isKnown();
      const metaChanged = JSON.stringify(this.meta()) !== this.lastMeta;
      if (!known)
        this.o.log.warn(
          { id: this.o.id },
          'consul agent does not know this instance: registering again',
        );
      if (!known || metaChanged) await this.register();
      if (this.agentDown) this.o.log.info('consul agent reachable again');
      this.agentDown = false;
      this.unreachableSince = undefined;
    } catch (err) {
      this.o.onError?.();
      if (!this.agentDown)
        this.o.log.warn(
          { err: (err as Error).message },
          'consul agent unreachable: will keep retrying',
        );
      this.agentDown = true;
      this.unreachableSince ??= Date.now();
    }
  }

  /** The live meta, and the internal port when hops have a port of their own. */
  private meta(): Record<string, string> {
    const { internalPort } = this.o;
    return {
      ...this.o.meta(),
      ...(internalPort === undefined ? {} : { internal_port: String(internalPort) }),
    };
  }

  private async isKnown(): Promise<boolean> {
    const services = (await this.o.consul.agent.service.list()) as Record<string, unknown>;
    return Object.hasOwn(services, this.o.id);
  }

  private async register(): Promise<void> {
    const o = this.o;
    const meta = this.meta();
    const check = (port: number, name: string) => ({
      name,
      http: `http://${o.address}:${port}/health`,
      interval: msText(o.checkIntervalMs),
      timeout: msText(o.checkTimeoutMs),
      failuresbeforecritical: o.checkFailures,
      deregistercriticalserviceafter: seconds(o.deregisterAfterMs),
    });
    await o.consul.agent.service.register({
      id: o.id,
      name: o.name,
      address: o.address,
      port: o.port,
      tags: o.tags ?? [],
      meta,
      checks: [
        check(o.healthPort, `${o.name} /health`),
        ...(o.internalPort === undefined
          ? []
          : [check(o.internalPort, `${o.name} /health (internal port)`)]),
      ],
    });
    this.lastMeta = JSON.stringify(meta);
  }
}
