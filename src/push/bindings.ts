import type { Logger } from '../core/logger.js';
import { CONNECT_BATCH_MS } from '../core/tuning.js';
import type { Routes } from '../core/routes.js';

export interface BindingsOptions {
  routes: Pick<Routes, 'remove' | 'addAll'>;
  /** This node's id in the routes (its Consul ServiceID, known once it listens). */
  nodeId: () => string;
  /** The users with a socket here (the hub's). */
  users: () => Iterable<string>;
  /** ROUTE_TTL_SECONDS in ms: how long a binding lasts unless renewed. */
  ttlMs: number;
  log: Logger;
}

/**
 * This node's side of the routes: a user is bound to the node (in Redis) while they have
 * a socket here, so that dispatch forwards their messages here. Bindings expire unless
 * renewed, so they are renewed all together on a timer; a failed write is only logged,
 * since the next renewal redoes it.
 */
export class Bindings {
  private timer: NodeJS.Timeout | undefined;
  private rebound: (userIds: string[]) => void = () => undefined;
  /** Users to bind with the next write, the promise of that write, and the write out. */
  private toBind = new Set<string>();
  private nextBind: Promise<void> | undefined;
  private writing: Promise<void> | undefined;

  constructor(private readonly o: BindingsOptions) {}

  /**
   * Binds a user on their first socket here. Users are bound many per write: those who
   * connect within CONNECT_BATCH_MS, or, while a write is out, all who connect meanwhile.
   * Under a connect burst, a write to Redis per socket cost the node more than the
   * WebSocket handshake (bench `--profile-connect`).
   */
  bind(userId: string): Promise<void> {
    this.toBind.add(userId);
    this.nextBind ??= this.windowAndWriteDone().then(() => {
      const users = [...this.toBind];
      this.toBind = new Set();
      this.nextBind = undefined;
      this.writing = this.bindNow(users).finally(() => (this.writing = undefined));
      return this.writing;
    });
    return this.nextBind;
  }

  /** Resolves after CONNECT_BATCH_MS, once no bind write is out. */
  private async windowAndWriteDone(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, CONNECT_BATCH_MS));
    while (this.writing) await this.writing;
  }

  private async bindNow(users: string[]): Promise<void> {
    if (users.length === 0) return;
    try {
      await this.o.routes.addAll(this.o.nodeId(), users);
    } catch (err) {
      this.o.log.warn(
        { err: (err as Error).message, users: users.length },
        'could not bind users in redis: the next renewal will',
      );
    }
  }

  /** Unbinds a user when their last socket here closes. */
  async unbind(userId: string): Promise<void> {
    // Not bound yet: the write that would bind them must not outlive this unbind.
    this.toBind.delete(userId);
    try {
      await this.o.routes.remove(this.o.nodeId(), userId);
    } catch (err) {
      this.o.log.warn(
        { err: (err as Error).message, userId },
        'could not unbind user in redis: the binding will expire',
      );
    }
  }

  /** Called with the users whose binding a renewal had to re-create. */
  onRebound(listener: (userIds: string[]) => void): void {
    this.rebound = listener;
  }

  /** Renews the binding of every user here, re-creating those that were gone. */
  async renew(): Promise<void> {
    try {
      const rebound = await this.o.routes.addAll(this.o.nodeId(), this.o.users());
      if (rebound.length > 0) {
        this.o.log.info({ users: rebound.length }, 'bindings re-created: replaying to their users');
        this.rebound(rebound);
      }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'route renewal failed: will retry');
    }
  }

  /** Renews at a third of the expiry: two renewals can fail before a binding lapses. */
  start(): void {
    this.timer = setInterval(() => void this.renew(), this.o.ttlMs / 3);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Unbinds every given user (a drain), whatever fails. */
  async unbindAll(userIds: readonly string[]): Promise<void> {
    await Promise.allSettled(userIds.map((u) => this.o.routes.remove(this.o.nodeId(), u)));
  }
}
