import { describe, expect, it, vi } from 'vitest';
import { PeerError, PeerUnavailable } from '../../src/core/peers.js';
import { MAX_USERS_PER_FIRST_PAGES, unackedFirstPagesHop } from '../../src/protocol/hops.js';
import { CONNECT_BATCH_MS } from '../../src/core/tuning.js';
import { FirstPages } from '../../src/push/first-pages.js';
import { envelope, FakePeers } from './push-fakes.js';

interface FirstPagesRequest {
  userIds: string[];
  limit: number;
}

describe('FirstPages (the first replay page of each connect)', () => {
  it('asks collect once for the connects within CONNECT_BATCH_MS, each getting its own page', async () => {
    const collect = new FakePeers((_path, body) => ({
      pages: (body as FirstPagesRequest).userIds.map((u) =>
        u === 'bob' ? [] : [envelope(`m-${u}`, u)],
      ),
    }));
    const pages = new FirstPages({ collect, limit: 500 });
    const [alice, bob, carol] = await Promise.all(
      ['alice', 'bob', 'carol'].map((u) => pages.ask(u)),
    );
    expect(alice?.map((m) => m.id)).toEqual(['m-alice']);
    expect(bob).toEqual([]);
    expect(carol?.map((m) => m.id)).toEqual(['m-carol']);
    expect(collect.callsTo(unackedFirstPagesHop.path)).toEqual([
      { userIds: ['alice', 'bob', 'carol'], limit: 500 },
    ]);
  });

  it(`splits a burst into requests of at most ${MAX_USERS_PER_FIRST_PAGES} users`, async () => {
    const collect = new FakePeers((_path, body) => ({
      pages: (body as FirstPagesRequest).userIds.map(() => []),
    }));
    const pages = new FirstPages({ collect, limit: 500 });
    const users = Array.from({ length: MAX_USERS_PER_FIRST_PAGES + 1 }, (_, i) => `u${i}`);
    await Promise.all(users.map((u) => pages.ask(u)));
    const sizes = (collect.callsTo(unackedFirstPagesHop.path) as FirstPagesRequest[]).map(
      (b) => b.userIds.length,
    );
    expect(sizes).toEqual([MAX_USERS_PER_FIRST_PAGES, 1]);
  });

  it('answers null for a user collect had no room for, so the replay asks for it alone', async () => {
    const collect = new FakePeers(() => ({ pages: [[], null] }));
    const pages = new FirstPages({ collect, limit: 500 });
    expect(await Promise.all([pages.ask('a'), pages.ask('b')])).toEqual([[], null]);
  });

  it('fails every ask of a request collect could not answer, and the next turn asks again', async () => {
    let up = false;
    const collect = new FakePeers((_path, body) => {
      if (!up) throw new PeerUnavailable('no collect instance is passing');
      return { pages: (body as FirstPagesRequest).userIds.map(() => []) };
    });
    const pages = new FirstPages({ collect, limit: 500 });
    const failed = await Promise.allSettled([pages.ask('a'), pages.ask('b')]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    up = true;
    expect(await pages.ask('a')).toEqual([]);
  });
});

describe('FirstPages against a collect of an older build', () => {
  it('answers null for each user when collect knows no first-pages hop (404), so each is asked alone', async () => {
    const collect = new FakePeers(() => {
      throw new PeerError(404, 'not_found');
    });
    const pages = new FirstPages({ collect, limit: 500 });
    expect(await Promise.all([pages.ask('a'), pages.ask('b')])).toEqual([null, null]);
  });
});

describe('FirstPages under a burst', () => {
  it('gathers the connects that come while two requests are out into the next one', async () => {
    const answers: (() => void)[] = [];
    const collect = new FakePeers(async (_path, body) => {
      await new Promise<void>((r) => answers.push(r));
      return { pages: (body as FirstPagesRequest).userIds.map(() => []) };
    });
    const pages = new FirstPages({ collect, limit: 500 });
    const nextWindow = () => new Promise((r) => setTimeout(r, CONNECT_BATCH_MS + 2));
    const asked: Promise<unknown>[] = [];
    // Each connect in a window of its own: a and b go out alone, c, d and e wait.
    for (const u of ['a', 'b', 'c', 'd', 'e']) {
      asked.push(pages.ask(u));
      await nextWindow();
    }
    expect(collect.calls).toHaveLength(2);
    answers.shift()?.();
    await vi.waitFor(() => expect(collect.calls).toHaveLength(3));
    const sent = collect.callsTo(unackedFirstPagesHop.path) as FirstPagesRequest[];
    expect(sent.map((b) => b.userIds)).toEqual([['a'], ['b'], ['c', 'd', 'e']]);
    await vi.waitFor(() => expect(answers).toHaveLength(2));
    for (const answer of answers.splice(0)) answer();
    expect(await Promise.all(asked)).toEqual([[], [], [], [], []]);
  });
});
