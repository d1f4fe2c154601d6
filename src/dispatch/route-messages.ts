import type { Envelope } from '../protocol/hops.js';

export interface RoutePlan {
  /** What each passing node should get: every message of every user bound to it. */
  byNode: Map<string, Envelope[]>;
  /** Users bound to no node at all: their messages wait for a connect. */
  unrouted: Envelope[];
  /** Users bound only to nodes outside the passing set (evicted, or failing a check for a
   *  moment): their messages are tried again shortly, never dropped on a stale route. */
  blocked: Envelope[];
}

export function routeMessages(
  messages: readonly Envelope[],
  routes: ReadonlyMap<string, readonly string[]>,
  isPassing: (nodeId: string) => boolean,
): RoutePlan {
  const plan: RoutePlan = { byNode: new Map(), unrouted: [], blocked: [] };
  for (const m of messages) {
    const nodes = routes.get(m.to) ?? [];
    if (nodes.length === 0) {
      plan.unrouted.push(m);
      continue;
    }
    let routed = false;
    for (const nodeId of nodes) {
      if (!isPassing(nodeId)) continue;
      routed = true;
      let batch = plan.byNode.get(nodeId);
      if (!batch) plan.byNode.set(nodeId, (batch = []));
      batch.push(m);
    }
    if (!routed) plan.blocked.push(m);
  }
  return plan;
}
