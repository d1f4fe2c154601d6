import type { Instance } from '../core/discovery.js';
import { Fifo } from '../core/fifo.js';

export interface ConnectBalancerOptions {
  /** How long the last passing nodes are still handed out once none passes. */
  lastKnownMs: number;
  /** How long a URL handed out counts against its node: about the longest a client takes
   *  from /v1/connect to an open socket (default 10 s, a client's handshake timeout). */
  handedOutMs?: number;
  /** Epoch milliseconds; tests pass their own clock. */
  clock?: { now(): number };
}

/**
 * Picks the push node a new client should connect to: the passing node with the fewest
 * connections, counting the clients still on their way, among those below their capacity.
 * Consul's `connections` meta lags by up to a sync interval, and under load a client takes
 * seconds from /v1/connect to an open socket, so each node's load is its last report plus
 * the URLs handed out that no report has shown yet: a report that grew by n takes the n
 * oldest hand-outs as arrived, and a hand-out older than `handedOutMs` is taken as given up.
 * A burst of clients then spreads instead of piling onto the node that looked emptiest.
 * (Forgetting every hand-out at the next report split a storm of 15,000 users 3,653 /
 * 11,344 over two nodes: the node that connected its clients more slowly reported fewer,
 * and got every new one.)
 *
 * When no node passes, the last ones that did are handed out for `lastKnownMs` more: under
 * a reconnect storm every live node may miss a health check at once, and answering 503
 * then sent thousands of clients into their backoff (19,606 of them in a storm of 15,000
 * users, bench `--only storm`). A node that is really gone refuses the connect, and its
 * client asks again; a node out of routing answers 503 itself.
 */
export class ConnectBalancer {
  /** Per node: its last report, and when each URL handed out since was handed out, oldest
   *  first. */
  private nodes: { url: string; reported: number; capacity: number; onTheirWay: Fifo<number> }[] =
    [];
  /** When the passing set became empty while nodes were known; undefined while some pass. */
  private noneSince: number | undefined;
  private readonly clock: { now(): number };
  private readonly handedOutMs: number;

  constructor(private readonly o: ConnectBalancerOptions) {
    this.clock = o.clock ?? Date;
    this.handedOutMs = o.handedOutMs ?? 10_000;
  }

  update(instances: readonly Instance[]): void {
    const withUrl = instances.filter((i) => i.meta.ws_url);
    if (withUrl.length === 0 && this.nodes.length > 0) {
      this.noneSince ??= this.clock.now();
      return;
    }
    this.noneSince = undefined;
    const previous = new Map(this.nodes.map((n) => [n.url, n]));
    this.nodes = withUrl.map((i) => {
      const url = i.meta.ws_url as string;
      const reported = Number(i.meta.connections) || 0;
      // A node of an older build reports no capacity: taken as unbounded.
      const capacity = Number(i.meta.capacity) || Infinity;
      const before = previous.get(url);
      const onTheirWay = before?.onTheirWay ?? new Fifo<number>();
      // The connections the report gained are clients handed out before it that arrived.
      onTheirWay.drop(reported - (before?.reported ?? reported));
      return { url, reported, capacity, onTheirWay };
    });
  }

  pick(): string | undefined {
    if (this.noneSince !== undefined && this.clock.now() - this.noneSince > this.o.lastKnownMs)
      return undefined;
    let best: (typeof this.nodes)[number] | undefined;
    let bestLoad = Infinity;
    for (const n of this.nodes) {
      const load = this.loadOf(n);
      // A node holding (or promised) as many sockets as it accepts would refuse with 503.
      if (load >= n.capacity) continue;
      if (load < bestLoad) {
        best = n;
        bestLoad = load;
      }
    }
    if (!best) return undefined;
    best.onTheirWay.push(this.clock.now());
    return best.url;
  }

  /** Whether nodes pass but every one holds, or has been promised, as many sockets as it
   *  accepts (its `capacity` meta, WS_MAX_CONNECTIONS): then pick() has nothing. */
  get isFull(): boolean {
    return this.nodes.length > 0 && this.nodes.every((n) => this.loadOf(n) >= n.capacity);
  }

  /** A node's last report plus its clients on their way; those handed out longer than
   *  handedOutMs ago are taken to have given up, and forgotten. */
  private loadOf(n: (typeof this.nodes)[number]): number {
    const since = this.clock.now() - this.handedOutMs;
    while ((n.onTheirWay.peek() ?? Infinity) < since) n.onTheirWay.shift();
    return n.reported + n.onTheirWay.size;
  }

  /**
   * Up to `max` nodes other than `url`, a random few of them: the fallbacks a client tries
   * when it loses `url`'s node. Random, so that the clients of a lost node spread over the
   * others instead of all going to the one that looked emptiest when each client connected.
   */
  fallbacks(url: string, max: number, random: () => number = Math.random): string[] {
    const others = this.nodes.filter((n) => n.url !== url).map((n) => n.url);
    // A partial Fisher–Yates shuffle: the first `max` places only.
    const count = Math.min(max, others.length);
    for (let i = 0; i < count; i++) {
      const j = i + Math.floor(random() * (others.length - i));
      [others[i], others[j]] = [others[j] as string, others[i] as string];
    }
    return others.slice(0, count);
  }
}
