import type { Instance } from '../core/discovery.js';
import type { Envelope, ResponseOf, forwardHop, handoffHop } from '../protocol/hops.js';
import { routeMessages } from './route-messages.js';

/** What dispatch needs to forward a hand-off: routes, the passing nodes, the forward hop. */
export interface ForwardDeps {
  /** Each user's bound push node ids (routes in Redis). */
  lookupRoutes(userIds: string[]): Promise<ReadonlyMap<string, readonly string[]>>;
  /** The node if it is in the passing set now, else undefined. */
  passingNode(nodeId: string): Instance | undefined;
  /** Calls the forward hop on one node: the ids that reached a socket there, and those a
   *  socket's replay had pushed already. */
  forward(node: Instance, messages: Envelope[]): Promise<ResponseOf<typeof forwardHop>>;
  /** A node that was sent its share did not take it. */
  onNodeFailed(nodeId: string, messages: number, err: Error): void;
}

/**
 * The answer to a hand-off: every message goes to every passing node its user is bound
 * to, one call per node. Delivered: reached a socket somewhere. Replayed: not delivered
 * anywhere, but a socket had just got it from its replay (which reported it itself).
 * Unrouted: the user is bound nowhere, or every node that answered had no socket of the
 * user. None: a node that should have it did not answer, or the user is bound only to
 * nodes out of the passing set — collect tries those again shortly, so a stale route never
 * swallows a message.
 */
export async function forwardMessages(
  messages: readonly Envelope[],
  deps: ForwardDeps,
): Promise<ResponseOf<typeof handoffHop>> {
  const routes = await deps.lookupRoutes([...new Set(messages.map((m) => m.to))]);
  const plan = routeMessages(messages, routes, (id) => deps.passingNode(id) !== undefined);
  const delivered = new Set<string>();
  const replayedSomewhere = new Set<string>();
  const answered = new Set<string>();
  const failed = new Set<string>();
  await Promise.all(
    [...plan.byNode].map(async ([nodeId, batch]) => {
      try {
        const node = deps.passingNode(nodeId);
        if (!node) throw new Error('left the passing set');
        const res = await deps.forward(node, batch);
        for (const id of res.delivered) delivered.add(id);
        for (const id of res.replayed ?? []) replayedSomewhere.add(id);
        for (const m of batch) answered.add(m.id);
      } catch (err) {
        for (const m of batch) failed.add(m.id);
        deps.onNodeFailed(nodeId, batch.length, err as Error);
      }
    }),
  );
  const unrouted = plan.unrouted.map((m) => m.id);
  const replayed: string[] = [];
  for (const id of answered) {
    if (delivered.has(id) || failed.has(id)) continue;
    if (replayedSomewhere.has(id)) replayed.push(id);
    else unrouted.push(id);
  }
  return { delivered: [...delivered], unrouted, replayed };
}
