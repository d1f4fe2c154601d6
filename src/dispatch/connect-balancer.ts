import type { Instance } from '../core/discovery.js';

/**
 * Picks the push node a new client should connect to: the passing node with the
 * fewest connections. Consul's `connections` meta lags by up to a sync interval, so
 * the URLs handed out since a node's last report count too: a burst of clients
 * spreads instead of piling onto the node that looked emptiest.
 */
export class ConnectBalancer {
  private nodes: { url: string; reported: number; handedOut: number }[] = [];

  update(instances: readonly Instance[]): void {
    const previous = new Map(this.nodes.map((n) => [n.url, n]));
    this.nodes = instances
      .filter((i) => i.meta.ws_url)
      .map((i) => {
        const url = i.meta.ws_url as string;
        const reported = Number(i.meta.connections) || 0;
        const before = previous.get(url);
        // A fresh report already counts the clients handed out before it.
        const handedOut = before && before.reported === reported ? before.handedOut : 0;
        return { url, reported, handedOut };
      });
  }

  pick(): string | undefined {
    let best: (typeof this.nodes)[number] | undefined;
    for (const n of this.nodes) {
      if (!best || n.reported + n.handedOut < best.reported + best.handedOut) best = n;
    }
    if (!best) return undefined;
    best.handedOut++;
    return best.url;
  }
}
