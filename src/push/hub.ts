import type { WebSocket } from 'ws';

/** One client socket, with what the node tracks about it. */
export interface Connection {
  ws: WebSocket;
  userId: string;
  tokenExpiresAt: number;
  alive: boolean;
  /** While pending messages are replayed, live frames wait here so the user sees them in order. */
  held: { id: string; frame: string }[] | undefined;
  /** Ids this socket got in its replay: a message stored just before the replay query may
   *  still come through dispatch afterwards, once, and that copy is not pushed again. A later
   *  redelivery (the ack did not come) is pushed as usual. */
  replayed: Set<string> | undefined;
  /** Ids pushed and not acked yet, so a drain can wait for their acks (bounded; created on
   *  the first push, since an idle connection should cost as little as possible). */
  unacked: Set<string> | undefined;
}

/** hub: this node's users and their open sockets. */
export class Hub {
  private readonly users = new Map<string, Set<Connection>>();
  private count = 0;

  /** Adds a socket; true when it is the user's first on this node. */
  add(conn: Connection): boolean {
    let set = this.users.get(conn.userId);
    const first = set === undefined;
    if (!set) this.users.set(conn.userId, (set = new Set()));
    set.add(conn);
    this.count++;
    return first;
  }

  /** Removes a socket; true when it was the user's last on this node. */
  remove(conn: Connection): boolean {
    const set = this.users.get(conn.userId);
    if (!set?.delete(conn)) return false;
    this.count--;
    if (set.size > 0) return false;
    this.users.delete(conn.userId);
    return true;
  }

  connectionsOf(userId: string): ReadonlySet<Connection> | undefined {
    return this.users.get(userId);
  }

  userIds(): IterableIterator<string> {
    return this.users.keys();
  }

  *connections(): IterableIterator<Connection> {
    for (const set of this.users.values()) yield* set;
  }

  get connectionCount(): number {
    return this.count;
  }
}
