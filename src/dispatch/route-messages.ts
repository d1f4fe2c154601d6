import type { Envelope } from '../core/protocol.js';

/**
 * Groups messages by the push node that should get them: every live node a user is
 * bound to gets that user's messages. Nodes outside the registry's passing set are
 * left out: a stale route must not swallow a message.
 */
export function routeMessages(
  messages: readonly Envelope[],
  routes: ReadonlyMap<string, readonly string[]>,
  isPassing: (nodeId: string) => boolean,
): Map<string, Envelope[]> {
  const byNode = new Map<string, Envelope[]>();
  for (const m of messages) {
    for (const nodeId of routes.get(m.to) ?? []) {
      if (!isPassing(nodeId)) continue;
      let batch = byNode.get(nodeId);
      if (!batch) byNode.set(nodeId, (batch = []));
      batch.push(m);
    }
  }
  return byNode;
}
