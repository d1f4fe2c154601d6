import { afterEach, describe, expect, it, vi } from 'vitest';
import { CONNECT_BATCH_MS } from '../../src/core/tuning.js';
import { Bindings } from '../../src/push/bindings.js';
import { testLog } from '../support/silent-log.js';

afterEach(() => vi.useRealTimers());

/** Bindings of node-1 over routes that record each write, failing while `down`. */
function setup(users: string[] = []) {
  const state = {
    down: false,
    writes: [] as string[],
    lapsed: [] as string[],
    /** While set, each write waits until released through it. */
    held: undefined as (() => void)[] | undefined,
  };
  const write = async (what: string) => {
    if (state.down) throw new Error('redis is down');
    state.writes.push(what);
    const held = state.held;
    if (held) await new Promise<void>((r) => held.push(r));
  };
  const bindings = new Bindings({
    routes: {
      removeAll: (node, all) => write(`removeAll ${node} ${[...all].join(',')}`),
      addAll: async (node, all) => {
        const users = [...all];
        await write(`addAll ${node} ${users.join(',')}`);
        return users.filter((u) => state.lapsed.includes(u));
      },
    },
    nodeId: () => 'node-1',
    users: () => users,
    ttlMs: 30_000,
    log: testLog('push'),
  });
  return { state, bindings };
}

describe('Bindings (this node in the routes)', () => {
  it('binds and unbinds a user in the routes under this node id', async () => {
    const { state, bindings } = setup();
    await bindings.bind('alice');
    await bindings.unbind('alice');
    expect(state.writes).toEqual(['addAll node-1 alice', 'removeAll node-1 alice']);
  });

  it('binds the users who connect within CONNECT_BATCH_MS with one write', async () => {
    const { state, bindings } = setup();
    await Promise.all(['alice', 'bob', 'carol'].map((u) => bindings.bind(u)));
    await bindings.bind('dave');
    expect(state.writes).toEqual(['addAll node-1 alice,bob,carol', 'addAll node-1 dave']);
  });

  it('binds the users who connect while a write is out with the next write', async () => {
    const { state, bindings } = setup();
    state.held = [];
    const first = bindings.bind('alice');
    await new Promise((r) => setTimeout(r, CONNECT_BATCH_MS + 2));
    // alice's write is out: bob and carol, in windows of their own, wait for it.
    const bob = bindings.bind('bob');
    await new Promise((r) => setTimeout(r, CONNECT_BATCH_MS + 2));
    const carol = bindings.bind('carol');
    await new Promise((r) => setTimeout(r, CONNECT_BATCH_MS + 2));
    expect(state.writes).toEqual(['addAll node-1 alice']);
    state.held.shift()?.();
    await vi.waitFor(() => expect(state.held).toHaveLength(1));
    state.held.shift()?.();
    await Promise.all([first, bob, carol]);
    expect(state.writes).toEqual(['addAll node-1 alice', 'addAll node-1 bob,carol']);
  });

  it('does not bind a user whose socket closed before the bind was written', async () => {
    const { state, bindings } = setup();
    const bound = Promise.all([bindings.bind('alice'), bindings.bind('bob')]);
    await bindings.unbind('alice');
    await bound;
    expect(state.writes).toEqual(['addAll node-1 bob', 'removeAll node-1 alice']);
  });

  it('unbinds the users who leave within CONNECT_BATCH_MS with one write', async () => {
    const { state, bindings } = setup();
    await Promise.all(['alice', 'bob', 'carol'].map((u) => bindings.bind(u)));
    await Promise.all(['alice', 'bob', 'carol'].map((u) => bindings.unbind(u)));
    expect(state.writes).toEqual([
      'addAll node-1 alice,bob,carol',
      'removeAll node-1 alice,bob,carol',
    ]);
  });

  it("keeps each user's binds and unbinds in order: the last change wins", async () => {
    const { state, bindings } = setup();
    await bindings.bind('alice');
    // alice leaves and comes back within one window: she stays bound.
    await Promise.all([bindings.unbind('alice'), bindings.bind('alice')]);
    // bob's unbind, made while his bind is out, goes out after it.
    state.held = [];
    const bound = bindings.bind('bob');
    await vi.waitFor(() => expect(state.held).toHaveLength(1));
    const unbound = bindings.unbind('bob');
    await new Promise((r) => setTimeout(r, CONNECT_BATCH_MS + 2));
    expect(state.writes).toEqual([
      'addAll node-1 alice',
      'addAll node-1 alice',
      'addAll node-1 bob',
    ]);
    state.held.shift()?.();
    await vi.waitFor(() => expect(state.held).toHaveLength(1));
    state.held.shift()?.();
    await Promise.all([bound, unbound]);
    expect(state.writes.slice(3)).toEqual(['removeAll node-1 bob']);
  });

  it('leaves out of a renewal the users whose bind is not written yet', async () => {
    const users = ['alice'];
    const { state, bindings } = setup(users);
    await bindings.bind('alice');
    users.push('bob');
    const held: (() => void)[] = [];
    state.held = held;
    const bound = bindings.bind('bob');
    await vi.waitFor(() => expect(held).toHaveLength(1));
    state.held = undefined;
    await bindings.renew();
    held.shift()?.();
    await bound;
    expect(state.writes).toEqual([
      'addAll node-1 alice',
      'addAll node-1 bob',
      'addAll node-1 alice',
    ]);
  });

  it('does not bind again a user who left while a renewal was under way', async () => {
    const users = new Set(['alice', 'bob']);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const renewed: string[] = [];
    const bindings = new Bindings({
      routes: {
        removeAll: async () => undefined,
        // As Routes does: one batch at a time, the next read after the last one's write.
        addAll: async (_node, all) => {
          for (const userId of all) {
            renewed.push(userId);
            await gate;
          }
          return [];
        },
      },
      nodeId: () => 'node-1',
      users: () => users.keys(),
      ttlMs: 30_000,
      log: testLog('push'),
    });
    const renewal = bindings.renew();
    users.delete('bob'); // bob's last socket closes while alice's batch is out
    release();
    await renewal;
    expect(renewed).toEqual(['alice']);
  });

  it('logs rather than throws when Redis is down: the renewal redoes the binding', async () => {
    const { state, bindings } = setup(['alice']);
    state.down = true;
    await expect(bindings.bind('alice')).resolves.toBeUndefined();
    await expect(bindings.unbind('alice')).resolves.toBeUndefined();
    await expect(bindings.renew()).resolves.toBeUndefined();
    state.down = false;
    await bindings.renew();
    expect(state.writes).toEqual(['addAll node-1 alice']);
  });

  it('renews every binding at a third of the expiry until stopped', async () => {
    vi.useFakeTimers();
    const { state, bindings } = setup(['alice', 'bob']);
    bindings.start();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(state.writes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(state.writes).toEqual(['addAll node-1 alice,bob']);
    bindings.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(state.writes).toHaveLength(1);
  });

  it('unbinds every given user on a drain, whatever fails', async () => {
    const { state, bindings } = setup();
    await bindings.unbindAll(['alice', 'bob']);
    state.down = true;
    await expect(bindings.unbindAll(['carol'])).resolves.toBeUndefined();
    expect(state.writes).toEqual(['removeAll node-1 alice,bob']);
  });

  it('tells which users a renewal had to bind anew, and only when there are some', async () => {
    const { state, bindings } = setup(['alice', 'bob']);
    const rebound: string[][] = [];
    bindings.onRebound((users) => rebound.push(users));
    await bindings.renew();
    state.lapsed = ['bob'];
    await bindings.renew();
    expect(rebound).toEqual([['bob']]);
  });
});
