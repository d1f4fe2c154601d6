import type { Logger } from '../core/logger.js';
import { CONNECT_BATCH_MS } from '../core/tuning.js';
import type { Routes } from '../core/routes.js';

export interface BindingsOptions {
  routes: Pick<Routes, 'removeAll' | 'addAll'>;
  /** This node's id in the routes (its Consul ServiceID, known once it listens). */
  nodeId: () => string;
  /** The users with a socket here (the hub's). */
  users: () => Iterable<string>;
  /** ROUTE_TTL_SECONDS in ms: how long a binding lasts unless renewed. */
  ttlMs: number;
  log: Logger;
}

/** What the next write does for a user: the user's last change wins. */
type Change = 'bind' | 'unbind';

/**
 * This node's side of the routes: a user is bound to the node (in Redis) while they have
 * a socket here, so that dispatch forwards their messages here. Bindings expire unless
 * renewed, so they are renewed all together on a timer; a failed write is only logged,
 * since the next renewal redoes it.
 *
 * Binds and unbinds go out many per write: the changes of CONNECT_BATCH_MS, or, while a
 * write is out, all changes made meanwhile. Under a connect burst a write to Redis per
 * socket cost the node more than the WebSocket handshake (bench `--profile-connect`); when
 * 16,667 clients of a node left at once, an unbind per socket held its event loop and
 * Redis for seconds, and its health check timed out. One write at a time, each user's last
 * change winning, keeps a user's binds and unbinds in the order they were made.
 */
export class Bindings {
  private timer: NodeJS.Timeout | undefined;
  private rebound: (userIds: string[]) => void = () => undefined;
  /** Changes for the next write, the promise of that write, and the write out with its
   *  changes. */
  private changes = new Map<string, Change>();
  private nextWrite: Promise<void> | undefined;
  private writing: { done: Promise<void>; changes: Map<string, Change> } | undefined;

  constructor(private readonly o: BindingsOptions) {}

  /** Binds a user on their first socket here; resolves once written (or failed). */
  bind(userId: string): Promise<void> {
    return this.change(userId, 'bind');
  }

  /** Unbinds a user when their last socket here closes. A socket that closes before its
   *  bind is written is unbound with the next write, which binds it no more. */
  unbind(userId: string): Promise<void> {
    return this.change(userId, 'unbind');
  }

  private change(userId: string, change: Change): Promise<void> {
    this.changes.set(userId, change);
    this.nextWrite ??= this.windowAndWriteDone().then(() => {
      const changes = this.changes;
      this.changes = new Map();
      this.nextWrite = undefined;
      const done = this.write(changes).finally(() => (this.writing = undefined));
      this.writing = { done, changes };
      return done;
    });
    return this.nextWrite;
  }

  /** Resolves after CONNECT_BATCH_MS, once no write is out. */
  private async windowAndWriteDone(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, CONNECT_BATCH_MS));
    while (this.writing) await this.writing.done;
  }

  private async write(changes: Map<string, Change>): Promise<void> {
    const binds: string[] = [];
    const unbinds: string[] = [];
    for (const [userId, change] of changes) (change === 'bind' ? binds : unbinds).push(userId);
    const node = this.o.nodeId();
    await Promise.all([
      binds.length > 0 &&
        this.logFailure(
          this.o.routes.addAll(node, binds),
          binds.length,
          'could not bind users in redis: the next renewal will',
        ),
      unbinds.length > 0 &&
        this.logFailure(
          this.o.routes.removeAll(node, unbinds),
          unbinds.length,
          'could not unbind users in redis: their bindings will expire',
        ),
    ]);
  }

  /** Waits for a Redis write, logging rather than throwing its failure. */
  private async logFailure(write: Promise<unknown>, users: number, message: string): Promise<void> {
    try {
      await write;
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message, users }, message);
    }
  }

  /** Whether a write, out or next, binds the user anyway. */
  private bindPending(userId: string): boolean {
    return this.changes.get(userId) === 'bind' || this.writing?.changes.get(userId) === 'bind';
  }

  /** Called with the users whose binding a renewal had to re-create. */
  onRebound(listener: (userIds: string[]) => void): void {
    this.rebound = listener;
  }

  /** Renews the binding of every user here, re-creating those that were gone. */
  async renew(): Promise<void> {
    try {
      const rebound = await this.o.routes.addAll(this.o.nodeId(), this.toRenew());
      if (rebound.length > 0) {
        this.o.log.info({ users: rebound.length }, 'bindings re-created: replaying to their users');
        this.rebound(rebound);
      }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'route renewal failed: will retry');
    }
  }

  /**
   * The users a renewal binds, read as it goes: routes.addAll takes them a batch at a time,
   * so a user who left since the renewal began is not bound again after their unbind (the
   * hub's live iterator skips them). Users whose bind is not written yet are left to that
   * write: a renewal would count them as bound anew, and they would be replayed twice.
   */
  private *toRenew(): Generator<string> {
    for (const userId of this.o.users()) if (!this.bindPending(userId)) yield userId;
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
    // A bind still to be written would land after these unbinds, and outlive the node.
    while (this.nextWrite ?? this.writing) await (this.nextWrite ?? this.writing?.done);
    await this.logFailure(
      this.o.routes.removeAll(this.o.nodeId(), userIds),
      userIds.length,
      'could not unbind users in redis on drain: their bindings will expire',
    );
  }
}
