import { describe, expect, it } from 'vitest';
import type { Instance } from '../../src/core/discovery.js';
import { forwardMessages, type ForwardDeps } from '../../src/dispatch/forward-messages.js';
import type { Envelope } from '../../src/protocol/hops.js';

const envelope = (id: string, to: string): Envelope => ({
  id,
  to,
  createdAt: '2026-01-01T00:00:00.000Z',
  frame: `{"type":"message","id":"${id}"}`,
});

const node = (id: string): Instance => ({
  id,
  service: 'push',
  address: '127.0.0.1',
  port: 1,
  meta: {},
  tags: [],
});

/** Nodes by id: what each one does with the messages it is sent (the ids it delivered, or
 *  its whole answer). */
type NodeBehaviour = (
  messages: Envelope[],
) => string[] | { delivered: string[]; replayed: string[] } | Error;

function deps(
  routes: Record<string, string[]>,
  nodes: Record<string, NodeBehaviour>,
): ForwardDeps & { sent: Map<string, string[]>; failures: string[] } {
  const sent = new Map<string, string[]>();
  const failures: string[] = [];
  return {
    sent,
    failures,
    lookupRoutes: async (userIds) => new Map(userIds.map((u) => [u, routes[u] ?? []])),
    passingNode: (id) => (nodes[id] ? node(id) : undefined),
    forward: async (n, messages) => {
      sent.set(
        n.id,
        messages.map((m) => m.id),
      );
      const out = nodes[n.id]?.(messages) ?? [];
      if (out instanceof Error) throw out;
      return Array.isArray(out) ? { delivered: out } : out;
    },
    onNodeFailed: (nodeId) => failures.push(nodeId),
  };
}

const deliverAll: NodeBehaviour = (messages) => messages.map((m) => m.id);

describe('forwardMessages', () => {
  it('sends each node, in one call, every message of every user bound to it', async () => {
    const d = deps({ alice: ['n1', 'n2'], bob: ['n2'] }, { n1: deliverAll, n2: deliverAll });
    const out = await forwardMessages(
      [envelope('1', 'alice'), envelope('2', 'bob'), envelope('3', 'alice')],
      d,
    );
    expect(Object.fromEntries(d.sent)).toEqual({ n1: ['1', '3'], n2: ['1', '2', '3'] });
    expect(out.delivered.sort()).toEqual(['1', '2', '3']);
    expect(out.unrouted).toEqual([]);
  });

  it('answers unrouted for a user bound nowhere, and for one whose nodes have no socket of the user', async () => {
    const d = deps({ bob: ['n1'] }, { n1: () => [] });
    const out = await forwardMessages([envelope('1', 'carol'), envelope('2', 'bob')], d);
    expect(out).toEqual({ delivered: [], unrouted: ['1', '2'], replayed: [] });
  });

  it('leaves a message in neither list when a node that should have it fails, even if another delivered it', async () => {
    const d = deps(
      { alice: ['n1', 'n2'], bob: ['n2'] },
      { n1: () => new Error('timeout'), n2: () => ['1'] },
    );
    const out = await forwardMessages([envelope('1', 'alice'), envelope('2', 'bob')], d);
    // 1 reached alice on n2: delivered. 2 was taken by n2 without a socket: unrouted.
    expect(out.delivered).toEqual(['1']);
    expect(out.unrouted).toEqual(['2']);
    expect(d.failures).toEqual(['n1']);
    const onlyFailed = await forwardMessages(
      [envelope('3', 'alice')],
      deps({ alice: ['n1'] }, { n1: () => new Error('down') }),
    );
    expect(onlyFailed).toEqual({ delivered: [], unrouted: [], replayed: [] });
  });

  it('never forwards to a node out of the passing set, nor calls the message unrouted', async () => {
    const d = deps({ alice: ['gone'] }, {});
    const out = await forwardMessages([envelope('1', 'alice')], d);
    expect(d.sent.size).toBe(0);
    expect(out).toEqual({ delivered: [], unrouted: [], replayed: [] });
  });

  it('answers replayed for a message a replay had pushed on one node, unless another node delivered it', async () => {
    const replayedOnly = { delivered: [], replayed: ['1', '2'] };
    const d = deps(
      { alice: ['n1'], bob: ['n1', 'n2'] },
      { n1: () => replayedOnly, n2: () => ['2'] },
    );
    const out = await forwardMessages([envelope('1', 'alice'), envelope('2', 'bob')], d);
    expect(out).toEqual({ delivered: ['2'], unrouted: [], replayed: ['1'] });
  });

  it('takes an answer without replayed (a push node of an earlier version) as before', async () => {
    const d = deps({ alice: ['n1'] }, { n1: () => [] });
    const out = await forwardMessages([envelope('1', 'alice')], d);
    expect(out).toEqual({ delivered: [], unrouted: ['1'], replayed: [] });
  });
});
