/** What the hub needs of a socket: whose it is. */
interface Owned {
  readonly userId: string;
}

/** hub: this node's users and their open sockets (connections, see connection.ts). */
export class Hub<C extends Owned> {
  private readonly users = new Map<string, Set<C>>();
  private count = 0;

  /** Adds a socket; true when it is the user's first on this node. */
  add(conn: C): boolean {
    let set = this.users.get(conn.userId);
    const first = set === undefined;
    if (!set) this.users.set(conn.userId, (set = new Set()));
    set.add(conn);
    this.count++;
    return first;
  }

  /** Removes a socket; true when it was the user's last on this node. */
  remove(conn: C): boolean {
    const set = this.users.get(conn.userId);
    if (!set?.delete(conn)) return false;
    this.count--;
    if (set.size > 0) return false;
    this.users.delete(conn.userId);
    return true;
  }

  connectionsOf(userId: string): ReadonlySet<C> | undefined {
    return this.users.get(userId);
  }

  userIds(): IterableIterator<string> {
    return this.users.keys();
  }

  *connections(): IterableIterator<C> {
    for (const set of this.users.values()) yield* set;
  }

  get connectionCount(): number {
    return this.count;
  }
}
