import type { ConsulClient } from './consul.js';
import type { Logger } from './logger.js';

export interface LeaderLockOptions {
  consul: ConsulClient;
  log: Logger;
  /** What the lock guards, e.g. "evicted-node-unbind": one holder per cluster. */
  name: string;
  /** The holder's Consul ServiceID: the lock is released when its health check fails. */
  serviceId: string;
  ttlSeconds?: number;
}

const KEY_PREFIX = 'push-cluster/locks/';

/**
 * A Consul session lock: among all instances trying, exactly one holds it at a time.
 * The session is bound to the agent's serfHealth and to the holder's own service check,
 * so a dead or failing holder loses it at once; lock-delay is 0 so that another instance
 * can take over without waiting.
 */
export class LeaderLock {
  private session: string | undefined;
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly key: string;
  private readonly ttl: number;

  constructor(private readonly o: LeaderLockOptions) {
    this.key = `${KEY_PREFIX}${o.name}`;
    this.ttl = o.ttlSeconds ?? 10;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const { session } = this;
    this.leading = false;
    this.session = undefined;
    if (!session) return;
    try {
      await this.o.consul.kv.set({ key: this.key, value: this.o.serviceId, release: session });
      await this.o.consul.session.destroy(session);
    } catch {
      // The session's TTL frees the lock anyway.
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      if (this.session && !(await this.renew())) this.session = undefined;
      this.session ??= await this.createSession();
      const acquired =
        (await this.o.consul.kv.set({
          key: this.key,
          value: this.o.serviceId,
          acquire: this.session,
        })) === true;
      if (acquired !== this.leading)
        this.o.log.info({ lock: this.o.name }, acquired ? 'took the lock' : 'lost the lock');
      this.leading = acquired;
    } catch (err) {
      if (this.leading)
        this.o.log.warn(
          { lock: this.o.name, err: (err as Error).message },
          'lost the lock: consul unreachable',
        );
      this.leading = false;
    }
    if (!this.stopped) {
      // The holder renews at a third of the TTL (two chances before its session lapses);
      // the others try every second, so a dead holder is replaced quickly.
      this.timer = setTimeout(() => void this.tick(), this.leading ? (this.ttl * 1000) / 3 : 1000);
      this.timer.unref();
    }
  }

  private get sessionName(): string {
    return `${this.o.name} (${this.o.serviceId})`;
  }

  private async createSession(): Promise<string> {
    await this.clearOwnStaleSession();
    const res = await this.o.consul.session.create({
      name: this.sessionName,
      ttl: `${this.ttl}s`,
      lockdelay: '0s',
      behavior: 'release',
      checks: ['serfHealth', `service:${this.o.serviceId}`],
    });
    return res.ID;
  }

  /**
   * An instance restarted under the same ServiceID (same address and port) may find the
   * lock still held by the session of its previous life, which its health check will
   * not invalidate since the check passes again. That session is ours: end it.
   */
  private async clearOwnStaleSession(): Promise<void> {
    const item = (await this.o.consul.kv.get(this.key)) as { Session?: string } | null;
    if (!item?.Session) return;
    const info = (await this.o.consul.session.info(item.Session)) as unknown;
    const sessions = (Array.isArray(info) ? info : [info]) as { Name?: string }[];
    if (sessions[0]?.Name === this.sessionName) {
      await this.o.consul.session.destroy(item.Session);
      this.o.log.info(
        { lock: this.o.name },
        'ended the session of a previous run of this instance',
      );
    }
  }

  private async renew(): Promise<boolean> {
    try {
      await this.o.consul.session.renew(this.session as string);
      return true;
    } catch {
      return false;
    }
  }
}
