import { describe, expect, it } from 'vitest';
import type { Instance } from '../../src/core/discovery.js';
import { ConnectBalancer } from '../../src/dispatch/connect-balancer.js';

const node = (n: number, connections: number | undefined): Instance => ({
  id: `push-${n}`,
  service: 'push',
  address: '127.0.0.1',
  port: 7100 + n,
  tags: [],
  meta: {
    ws_url: `ws://127.0.0.1:${7100 + n}/ws`,
    ...(connections === undefined ? {} : { connections: String(connections) }),
  },
});

describe('ConnectBalancer', () => {
  it('picks the node with the fewest reported connections', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 10), node(2, 3)]);
    expect(b.pick()).toBe('ws://127.0.0.1:7102/ws');
  });

  it('spreads a burst between reports instead of piling onto one node', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 0), node(2, 0)]);
    const picks = Array.from({ length: 6 }, () => b.pick());
    expect(picks.filter((u) => u?.includes('7101'))).toHaveLength(3);
    expect(picks.filter((u) => u?.includes('7102'))).toHaveLength(3);
  });

  it('takes what a report gained as clients handed out before it that arrived', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 0), node(2, 0)]);
    for (let i = 0; i < 4; i++) b.pick(); // two each, on their way
    b.update([node(1, 2), node(2, 5)]); // node 1's two arrived; node 2 had 3 of its own
    // node 1: 2 reported + 0 on their way; node 2: 5 + 0.
    expect(b.pick()).toBe('ws://127.0.0.1:7101/ws');
  });

  it('spreads a storm evenly although one node reports its arrivals later than the other', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    const count = new Map<string, number>();
    const pick = (n: number) => {
      for (let i = 0; i < n; i++) {
        const url = b.pick() as string;
        count.set(url, (count.get(url) ?? 0) + 1);
      }
    };
    b.update([node(1, 0), node(2, 0)]);
    pick(1000);
    // Node 1 has connected 400 of its 500, node 2 only 100: the rest are on their way.
    b.update([node(1, 400), node(2, 100)]);
    pick(1000);
    b.update([node(1, 900), node(2, 500)]);
    pick(1000);
    expect(count.get('ws://127.0.0.1:7101/ws')).toBe(1500);
    expect(count.get('ws://127.0.0.1:7102/ws')).toBe(1500);
  });

  it('keeps counting right through thousands of hand-outs arriving and expiring', () => {
    const clock = { t: 0, now: () => clock.t };
    const b = new ConnectBalancer({ lastKnownMs: 30_000, handedOutMs: 10_000, clock });
    b.update([node(1, 0), node(2, 0)]);
    for (let i = 0; i < 6000; i++) b.pick(); // 3,000 each
    b.update([node(1, 2500), node(2, 0)]); // node 1's first 2,500 arrived
    clock.t += 5000;
    // node 1: 2,500 + 500 on their way; node 2: 0 + 3,000. Equal: they alternate.
    const picks = Array.from({ length: 4 }, () => b.pick());
    expect(new Set(picks).size).toBe(2);
    clock.t += 5001; // the 6,000 first hand-outs expire; the 4 new ones still count
    b.update([node(1, 2500), node(2, 1000)]);
    // node 1: 2,500 + 2; node 2: 1,000 + 2.
    expect(b.pick()).toBe('ws://127.0.0.1:7102/ws');
  });

  it('stops counting a client handed out handedOutMs ago: it has given up', () => {
    const clock = { t: 0, now: () => clock.t };
    const b = new ConnectBalancer({ lastKnownMs: 30_000, handedOutMs: 10_000, clock });
    b.update([node(1, 0), node(2, 10)]);
    for (let i = 0; i < 4; i++) expect(b.pick()).toBe('ws://127.0.0.1:7101/ws');
    b.update([node(1, 0), node(2, 2)]); // none of node 1's four arrived
    clock.t += 10_001;
    // Forgotten: node 1 (0) is emptier than node 2 (2); counted, it would weigh 4.
    expect(b.pick()).toBe('ws://127.0.0.1:7101/ws');
  });

  it('has nothing to offer without passing nodes, and ignores nodes without ws_url', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    expect(b.pick()).toBeUndefined();
    b.update([{ ...node(1, 0), meta: {} }]);
    expect(b.pick()).toBeUndefined();
  });

  it('skips a node that holds, or has been promised, as many sockets as it accepts', () => {
    const withCapacity = (n: number, connections: number, capacity: number): Instance => {
      const i = node(n, connections);
      return { ...i, meta: { ...i.meta, capacity: String(capacity) } };
    };
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    // Node 1 is small and already full; node 2 is busier but has room for two more.
    b.update([withCapacity(1, 100, 100), withCapacity(2, 998, 1000)]);
    expect(b.isFull).toBe(false);
    expect([b.pick(), b.pick()]).toEqual(['ws://127.0.0.1:7102/ws', 'ws://127.0.0.1:7102/ws']);
    // Both promised out: nothing to hand, and the reason is that every node is full.
    expect(b.pick()).toBeUndefined();
    expect(b.isFull).toBe(true);
    // A node of an older build reports no capacity: it is taken as unbounded.
    b.update([withCapacity(1, 100, 100), node(3, 5000)]);
    expect(b.pick()).toBe('ws://127.0.0.1:7103/ws');
  });

  it('hands out the last passing nodes for lastKnownMs once none passes, then nothing', () => {
    const clock = { t: 0, now: () => clock.t };
    const b = new ConnectBalancer({ lastKnownMs: 30_000, clock });
    b.update([node(1, 0), node(2, 0)]);
    b.update([node(2, 0)]); // node 1 left: it is not handed out again
    b.update([]); // node 2 misses a check too
    clock.t += 29_000;
    expect(b.pick()).toBe('ws://127.0.0.1:7102/ws');
    clock.t += 1001;
    expect(b.pick()).toBeUndefined();
    b.update([node(1, 0)]); // passing again: handed out at once
    expect(b.pick()).toBe('ws://127.0.0.1:7101/ws');
  });

  it('names as fallbacks other nodes only, at most as many as asked, each once', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([1, 2, 3, 4, 5, 6].map((n) => node(n, 0)));
    const url = 'ws://127.0.0.1:7103/ws';
    for (let round = 0; round < 50; round++) {
      const fallbacks = b.fallbacks(url, 4);
      expect(fallbacks).toHaveLength(4);
      expect(new Set(fallbacks).size).toBe(4);
      expect(fallbacks).not.toContain(url);
    }
    expect(b.fallbacks(url, 10)).toHaveLength(5);
  });

  it("spreads the fallbacks over every other node, so that a lost node's clients spread too", () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([1, 2, 3, 4, 5, 6].map((n) => node(n, n * 100)));
    const named = new Map<string, number>();
    for (let i = 0; i < 3000; i++)
      for (const u of b.fallbacks('ws://127.0.0.1:7101/ws', 2))
        named.set(u, (named.get(u) ?? 0) + 1);
    // Five others, two names each time: 1,200 each on average, whatever their load.
    expect([...named.keys()].sort()).toEqual(
      [2, 3, 4, 5, 6].map((n) => `ws://127.0.0.1:${7100 + n}/ws`),
    );
    for (const count of named.values()) expect(count).toBeGreaterThan(1000);
  });

  it('has no fallbacks for the only node', () => {
    const b = new ConnectBalancer({ lastKnownMs: 30_000 });
    b.update([node(1, 0)]);
    expect(b.fallbacks('ws://127.0.0.1:7101/ws', 4)).toEqual([]);
  });
});
