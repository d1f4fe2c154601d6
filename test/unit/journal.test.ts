import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { monotonicFactory } from 'ulid';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { JournalCorruptError } from '../../src/store/journal.js';
import { MemoryStore, type MemoryStoreOptions } from '../../src/store/memory-store.js';
import type { AckRetry, NewMessage, StoredMessage } from '../../src/store/message-store.js';

const RETRY: AckRetry = { baseMs: 1000, maxMs: 5000 };
const PROJECT_ROOT = join(import.meta.dirname, '..', '..');

describe('MemoryStore journal', () => {
  const ulid = monotonicFactory();
  let dir: string;
  let path: string;
  const open: MemoryStore[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'memory-journal-'));
    path = join(dir, 'messages.jsonl');
  });
  afterEach(async () => {
    vi.useRealTimers();
    for (const store of open.splice(0)) await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function openStore(
    opts: Omit<MemoryStoreOptions, 'journalPath'> = {},
  ): Promise<MemoryStore> {
    const store = await MemoryStore.open({ ...opts, journalPath: path });
    open.push(store);
    return store;
  }

  async function closeStore(store: MemoryStore): Promise<void> {
    open.splice(open.indexOf(store), 1);
    await store.close();
  }

  function message(to: string, over: Partial<NewMessage> = {}): NewMessage {
    const now = Date.now();
    return {
      id: ulid(),
      to,
      payload: { text: 'hello', list: [1, 'two', { three: null }] },
      createdAt: new Date(now),
      expiresAt: new Date(now + 3_600_000),
      ...over,
    };
  }

  async function all(
    store: MemoryStore,
    msgs: NewMessage[],
  ): Promise<(StoredMessage | undefined)[]> {
    return Promise.all(msgs.map((m) => store.get(m.id)));
  }

  it('a store reopened from its journal has every message in its latest state', async () => {
    const store = await openStore();
    const now = Date.now();
    const msgs = Array.from({ length: 8 }, (_, n) =>
      message(n % 2 === 0 ? 'alice' : 'bob', {
        key: n === 0 ? 'k0' : undefined,
        nextAttemptAt: new Date(now + n * 1000),
      }),
    );
    await store.insert(msgs);
    const [m0, m1, m2, m3, m4, m5, m6, m7] = msgs.map((m) => m.id) as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const t = (s: number): Date => new Date(now + s * 1000);
    await store.markDelivered([m0, m1, m2], t(1), RETRY);
    await store.markDelivered([m0], t(2), RETRY); // due at t(4)
    await store.markAcked('bob', [m1], t(3));
    await store.markFailed([m2], t(4), 'no ack');
    await store.markUnrouted([m3]);
    await store.retryAt([m4], t(60));
    const claimed = await store.claimDue(t(5), 2, 30_000);
    expect(claimed.map((m) => m.id)).toEqual([m0, m5]);
    const before = await all(store, msgs);
    const counts = await store.countByStatus();
    await closeStore(store);

    const reopened = await openStore();

    expect(await all(reopened, msgs)).toEqual(before);
    const leased = new Date(t(5).getTime() + 30_000);
    expect(before[0]).toMatchObject({ status: 'delivered', attempts: 2, nextAttemptAt: leased });
    expect(before[2]).toMatchObject({ status: 'failed', failReason: 'no ack', failedAt: t(4) });
    expect(before[3]?.nextAttemptAt).toBeUndefined();
    expect(before[5]?.nextAttemptAt).toEqual(leased);
    expect(await reopened.countByStatus()).toEqual(counts);
    expect(counts).toEqual({ pending: 5, delivered: 1, acked: 1, failed: 1 });
    // The indexes are rebuilt: unacked lists, due times, idempotency keys.
    expect((await reopened.listUnacked('alice', 10)).map((m) => m.id)).toEqual([m0, m4, m6]);
    expect((await reopened.listUnacked('bob', 10)).map((m) => m.id)).toEqual([m3, m5, m7]);
    expect((await reopened.claimDue(t(7), 10, 1000)).map((m) => m.id)).toEqual([m6, m7]);
    const repeat = message('alice', { key: 'k0' });
    expect((await reopened.insert([repeat])).ids).toEqual([m0]);
  });

  it('survives a process killed with SIGKILL: every insert that resolved is there after restart', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(PROJECT_ROOT, 'test/store/journal-child.ts'), path],
      { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    const resolved: string[] = [];
    const lines = createInterface({ input: child.stdout });
    for await (const line of lines) {
      if (line.startsWith('ready')) continue;
      resolved.push(line);
      if (resolved.length >= 300) {
        child.kill('SIGKILL');
        break;
      }
    }
    expect(await exited, stderr).toBe('SIGKILL');

    const store = await openStore();
    const got = await Promise.all(resolved.map((id) => store.get(id)));
    expect(got.filter((m) => m === undefined)).toHaveLength(0);
    expect(store.size).toBeGreaterThanOrEqual(resolved.length);
  }, 60_000);

  it('a last line torn by a crash mid-write is ignored, and the file is rewritten without it', async () => {
    const store = await openStore();
    const msgs = [message('u'), message('u')];
    await store.insert(msgs);
    await store.markDelivered([msgs[0]!.id], new Date(), RETRY);
    await closeStore(store);
    await appendFile(path, '{"t":"m","id":"01TORN","to":"u","payload":{"te');

    const reopened = await openStore();

    expect((await all(reopened, msgs)).map((m) => m?.status)).toEqual(['delivered', 'pending']);
    expect(reopened.size).toBe(2);
    const text = await readFile(path, 'utf8');
    expect(text).not.toContain('01TORN');
    expect(text.endsWith('\n')).toBe(true);
    // And the file keeps working after the rewrite.
    const more = message('u');
    await reopened.insert([more]);
    await closeStore(reopened);
    expect((await (await openStore()).get(more.id))?.id).toBe(more.id);
  });

  it('a damaged line before the end refuses to open, naming the line', async () => {
    const store = await openStore();
    await store.insert([message('u'), message('u')]);
    await closeStore(store);
    const lines = (await readFile(path, 'utf8')).split('\n');
    lines[1] = lines[1]!.slice(0, 20);
    await writeFile(path, lines.join('\n'));

    const opening = MemoryStore.open({ journalPath: path });
    await expect(opening).rejects.toBeInstanceOf(JournalCorruptError);
    await expect(opening).rejects.toThrow(/line 2/);
  });

  it('expired messages are dropped on reopen and the file shrinks', async () => {
    const store = await openStore();
    const now = Date.now();
    const shortLived = Array.from({ length: 50 }, () =>
      message('u', { expiresAt: new Date(now + 60_000), payload: { text: 'x'.repeat(500) } }),
    );
    const longLived = [message('u'), message('v')];
    await store.insert([...shortLived, ...longLived]);
    await store.markDelivered(
      shortLived.map((m) => m.id),
      new Date(now),
      RETRY,
    );
    await closeStore(store);
    const sizeBefore = (await stat(path)).size;

    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(now + 120_000);
    const reopened = await openStore();

    expect(reopened.size).toBe(2);
    expect((await all(reopened, longLived)).every((m) => m !== undefined)).toBe(true);
    const sizeAfter = (await stat(path)).size;
    expect(sizeAfter).toBeLessThan(sizeBefore / 10);
    expect(reopened.journalStats?.bytes).toBe(sizeAfter);
  });

  it('concurrent inserts share writes and fdatasyncs, and each resolves only after one', async () => {
    const store = await openStore();
    const start = store.journalStats!;

    const one = message('u');
    await store.insert([one]);
    expect(store.journalStats!.datasyncs).toBe(start.datasyncs + 1);

    const msgs = Array.from({ length: 200 }, () => message('u'));
    const results = await Promise.all(msgs.map((m) => store.insert([m])));

    expect(results.map((r) => r.ids[0])).toEqual(msgs.map((m) => m.id));
    const stats = store.journalStats!;
    expect(stats.datasyncs - start.datasyncs - 1).toBeLessThanOrEqual(3);
    expect(stats.writes - start.writes - 1).toBeLessThanOrEqual(3);
  });

  it('a repeated key waits for the write of the message it names', async () => {
    const store = await openStore();
    const first = message('u', { key: 'k' });
    const insertFirst = store.insert([first]);
    const insertRepeat = store.insert([message('u', { key: 'k' })]);
    const repeat = await insertRepeat;
    expect(repeat.ids).toEqual([first.id]);
    // Both calls waited for the one fdatasync that made the message durable.
    expect(store.journalStats!.datasyncs).toBe(1);
    await insertFirst;
  });

  it('status changes are written in order without waiting for a sync', async () => {
    const store = await openStore();
    const m = message('u');
    await store.insert([m]);
    const syncs = store.journalStats!.datasyncs;
    for (let n = 0; n < 20; n++) {
      await store.markDelivered([m.id], new Date(Date.now() + n * 1000), RETRY);
    }
    await store.markAcked('u', [m.id], new Date());
    const last = await store.get(m.id);
    // Give the writer its turn: the changes reach the file, with no fdatasync of their own.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(store.journalStats!.datasyncs).toBe(syncs);
    expect((await readFile(path, 'utf8')).trimEnd().split('\n')).toHaveLength(2 + 21);

    // Read back by another store while this one still runs: what a SIGKILL would leave.
    const copy = join(dir, 'copy.jsonl');
    await writeFile(copy, await readFile(path));
    const other = await MemoryStore.open({ journalPath: copy });
    open.push(other);
    expect(await other.get(m.id)).toEqual(last);
    expect(last).toMatchObject({ status: 'acked', attempts: 20 });
  });

  it('rewrites itself once it has grown, keeping the state', async () => {
    const store = await openStore({ journalCompactBytes: 20_000 });
    const msgs = Array.from({ length: 20 }, () => message('u'));
    await store.insert(msgs);
    for (let round = 0; round < 30; round++) {
      await store.markDelivered(
        msgs.map((m) => m.id),
        new Date(Date.now() + round),
        RETRY,
      );
      await store.insert([message('w')]);
    }
    const stats = store.journalStats!;
    expect(stats.compactions).toBeGreaterThan(0);
    expect((await stat(path)).size).toBe(stats.bytes);
    expect(stats.bytes).toBeLessThan(60_000);
    const before = await all(store, msgs);
    const size = store.size;
    await closeStore(store);

    const reopened = await openStore();
    expect(await all(reopened, msgs)).toEqual(before);
    expect(before.every((m) => m?.attempts === 30)).toBe(true);
    expect(reopened.size).toBe(size);
  });

  it('a payload that cannot be journaled fails the insert with nothing stored', async () => {
    const store = await openStore();
    const ok = message('u');
    const bad = message('u', { payload: { big: 1n } });
    await expect(store.insert([ok, bad])).rejects.toThrow(/BigInt/);
    expect(await store.get(ok.id)).toBeUndefined();
    expect(store.size).toBe(0);
    expect(await store.listUnacked('u', 10)).toEqual([]);
  });

  it('a closed journaled store refuses inserts and ping', async () => {
    const store = await openStore();
    await expect(store.ping()).resolves.toBeUndefined();
    await closeStore(store);
    await expect(store.insert([message('u')])).rejects.toThrow(/closed/);
    await expect(store.ping()).rejects.toThrow(/closed/);
  });
});
