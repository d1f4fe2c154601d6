import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../src/protocol/hops.js';
import { routeMessages } from '../../src/dispatch/route-messages.js';

const msg = (id: string, to: string): Envelope => ({
  id,
  to,
  createdAt: '2026-01-01T00:00:00.000Z',
  frame: `{"type":"message","id":"${id}"}`,
});

describe('routeMessages', () => {
  it('sends a user’s messages to every live node the user is bound to, in order', () => {
    const routes = new Map([
      ['alice', ['n1', 'n2']],
      ['bob', ['n2']],
    ]);
    const { byNode } = routeMessages(
      [msg('1', 'alice'), msg('2', 'bob'), msg('3', 'alice')],
      routes,
      () => true,
    );
    expect([...byNode.keys()].sort()).toEqual(['n1', 'n2']);
    expect(byNode.get('n1')?.map((m) => m.id)).toEqual(['1', '3']);
    expect(byNode.get('n2')?.map((m) => m.id)).toEqual(['1', '2', '3']);
  });

  it('leaves out nodes that are not passing, so a stale route cannot swallow a message', () => {
    const routes = new Map([['alice', ['dead', 'live']]]);
    const plan = routeMessages([msg('1', 'alice')], routes, (id) => id === 'live');
    expect([...plan.byNode.keys()]).toEqual(['live']);
    expect(plan.blocked).toEqual([]);
  });

  it('holds back messages whose user is bound only to nodes out of the passing set', () => {
    const plan = routeMessages([msg('1', 'alice')], new Map([['alice', ['evicted']]]), () => false);
    expect(plan.byNode.size).toBe(0);
    expect(plan.blocked.map((m) => m.id)).toEqual(['1']);
    expect(plan.unrouted).toEqual([]);
  });

  it('reports users without any binding as unrouted', () => {
    const plan = routeMessages(
      [msg('1', 'carol'), msg('2', 'dave')],
      new Map([['carol', []]]),
      () => true,
    );
    expect(plan.byNode.size).toBe(0);
    expect(plan.unrouted.map((m) => m.id)).toEqual(['1', '2']);
  });
});
