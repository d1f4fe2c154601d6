import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../src/core/protocol.js';
import { routeMessages } from '../../src/dispatch/route-messages.js';

const msg = (id: string, to: string): Envelope => ({
  id,
  to,
  payload: id,
  createdAt: '2026-01-01T00:00:00.000Z',
});

describe('routeMessages', () => {
  it('sends a user’s messages to every live node the user is bound to, in order', () => {
    const routes = new Map([
      ['alice', ['n1', 'n2']],
      ['bob', ['n2']],
    ]);
    const byNode = routeMessages(
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
    const byNode = routeMessages([msg('1', 'alice')], routes, (id) => id === 'live');
    expect([...byNode.keys()]).toEqual(['live']);
  });

  it('routes nothing for users without a binding', () => {
    expect(routeMessages([msg('1', 'carol')], new Map([['carol', []]]), () => true).size).toBe(0);
    expect(routeMessages([msg('1', 'dave')], new Map(), () => true).size).toBe(0);
  });
});
