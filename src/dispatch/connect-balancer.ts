import type { Instance } from '../core/discovery.js';

export interface ConnectBalancerOptions {
  /** How long the last passing nodes are still handed out once none passes. */
  lastKnownMs: number;
  /** Epoch milliseconds; tests pass their own clock. */
  clock?: { now(): number };
}

/**
 * Picks the push node a new client should connect to: the passing node with the
 * fewest connections. Consul's `connections` meta lags by up to a sync interval, so
 * the URLs handed out since a node's last report count too: a burst of clients
 * spreads instead of piling onto the node that looked emptiest.
 *
 * When no node passes, the last ones that did are handed out for `lastKnownMs` more: under
 * a reconnect storm every live node may miss a health check at once, and answering 503
 * then sent thousands of clients into their backoff (19,606 of them in a storm of 15,000
 * users, bench `--only storm`). A node that is really gone refuses the connect, and its
 * client asks again; a node out of routing answers 503 itself.
 */
export class ConnectBalancer {
  private nodes: { url: string; reported: number; handedOut: number }[] = [];
  /** When the passing set became empty while nodes were known; undefined while some pass. */
  private noneSince: number | undefined;
  private readonly clock: { now(): number };

  constructor(private readonly o: ConnectBalancerOptions) {
    this.clock = o.clock ?? Date;
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
      const before = previous.get(url);
      // A fresh report already counts the clients handed out before it.
      const handedOut = before && before.reported === reported ? before.handedOut : 0;
      return { url, reported, handedOut };
    });
  }

  pick(): string | undefined {
    if (this.noneSince !== undefined && this.clock.now() - this.noneSince > this.o.lastKnownMs)
      return undefined;
    let best: (typeof this.nodes)[number] | undefined;
    for (const n of this.nodes) {
      if (!best || n.reported + n.handedOut < best.reported + best.handedOut) best = n;
    }
    if (!best) return undefined;
    best.handedOut++;
    return best.url;
  }
}
