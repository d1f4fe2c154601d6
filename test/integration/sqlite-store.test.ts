import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import type { MessageStore } from '../../src/store/message-store.js';
import { SQL, SqliteStore } from '../../src/store/sqlite-store.js';
import { message, messageStoreContract } from '../store/message-store.contract.js';

{
  const dirs = new Map<MessageStore, string>();
  messageStoreContract(
    'sqlite file',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'sqlite-store-'));
      const store = SqliteStore.open({ path: join(dir, 'messages.sqlite') });
      dirs.set(store, dir);
      return store;
    },
    async (store) => {
      await store.close();
      const dir = dirs.get(store);
      if (dir) await rm(dir, { recursive: true, force: true });
    },
    { backlog: 100_000 },
  );
}

messageStoreContract('sqlite :memory:', async () => SqliteStore.open({ path: ':memory:' }));

const HOUR = 3_600_000;

/** Starts test/store/sqlite-child.ts and waits for its 'ready' line. */
async function child(
  args: string[],
): Promise<{ proc: ChildProcess; lines: AsyncIterableIterator<string>; stderr: () => string }> {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(PROJECT_ROOT, 'test/store/sqlite-child.ts'), ...args],
    { cwd: PROJECT_ROOT, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const first = await lines.next();
  if (first.value !== 'ready') throw new Error(`child did not start: ${stderr}`);
  return { proc, lines, stderr: () => stderr };
}

function exited(proc: ChildProcess): Promise<NodeJS.Signals | number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve(proc.signalCode ?? proc.exitCode);
  }
  return new Promise((resolve) => proc.on('exit', (code, signal) => resolve(signal ?? code)));
}

describe('SqliteStore', () => {
  let dir: string;
  let path: string;
  const open: SqliteStore[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sqlite-store-'));
    path = join(dir, 'messages.sqlite');
  });
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await rm(dir, { recursive: true, force: true });
  });

  function openStore(opts: { purgeBatch?: number } = {}): SqliteStore {
    const store = SqliteStore.open({ path, purgeIntervalMs: 0, ...opts });
    open.push(store);
    return store;
  }

  it('every query reads an index: no scan of the table, no sort in a temporary b-tree', () => {
    openStore();
    const db = new Database(path, { readonly: true });
    try {
      for (const [name, sql] of Object.entries(SQL)) {
        if (!/^\s*(SELECT|UPDATE|DELETE)/i.test(sql) || !/\bmessages\b/.test(sql)) continue;
        // Every parameter bound to 0: only the plan matters.
        const params = Object.fromEntries(
          [...sql.matchAll(/@(\w+)/g)].map((m) => [m[1]!, 0] as const),
        );
        const positional = (sql.match(/\?/g) ?? []).map(() => 0);
        const plan = (
          Object.keys(params).length > 0
            ? db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params)
            : db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...positional)
        ) as { detail: string }[];
        const text = plan.map((p) => p.detail).join(' | ');
        expect(text, name).not.toMatch(/SCAN messages(?! USING)/);
        expect(text, name).not.toContain('TEMP B-TREE');
        // A parameter right after LIMIT makes SQLite 3.53 prepare the statement again at
        // every run: an empty replay page cost 13 µs so, 3 µs with the CAST.
        expect(sql, name).not.toMatch(/LIMIT\s+[?@:$]/);
        expect(text, name).toMatch(/USING (INDEX|COVERING INDEX|PRIMARY KEY|INTEGER PRIMARY KEY)/);
        // A batch update reads its JSON array and finds each message by id.
        if (sql.includes('json_each')) {
          expect(text, name).toMatch(
            /^SCAN json_each .*SEARCH messages USING INDEX sqlite_autoindex/,
          );
        }
      }
    } finally {
      db.close();
    }
  });

  it('listUnacked reads the index of open messages', () => {
    openStore();
    const db = new Database(path, { readonly: true });
    try {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN ${SQL.unacked}`)
        .all({ to: 'u', wall: 0, afterCreatedAt: 0, afterId: '', limit: 1 }) as {
        detail: string;
      }[];
      expect(plan.map((p) => p.detail).join(' | ')).toMatch(/USING INDEX messages_open/);
    } finally {
      db.close();
    }
  });

  it('opens a file of the first builds (key column, insert trigger) and keeps its messages and keys', async () => {
    const early = new Database(path);
    early.exec(`
      CREATE TABLE messages (
        id TEXT NOT NULL PRIMARY KEY, to_user TEXT NOT NULL, payload TEXT NOT NULL,
        created_at INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER, delivered_at INTEGER, acked_at INTEGER, failed_at INTEGER,
        fail_reason TEXT, key TEXT, expires_at INTEGER NOT NULL, purge_at INTEGER NOT NULL);
      CREATE UNIQUE INDEX messages_key ON messages (key, to_user) WHERE key IS NOT NULL;
      CREATE TABLE status_counts (status TEXT NOT NULL PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO status_counts VALUES ('pending', 0), ('delivered', 0), ('acked', 0), ('failed', 0);
      CREATE TRIGGER messages_counted_insert AFTER INSERT ON messages BEGIN
        UPDATE status_counts SET n = n + 1 WHERE status = NEW.status; END;
      PRAGMA user_version = 1;`);
    const now = Date.now();
    early
      .prepare(
        `INSERT INTO messages (id, to_user, payload, created_at, status, key, expires_at, purge_at)
         VALUES ('01EARLY', 'u', '{"n":1}', ?, 'pending', 'k', ?, ?)`,
      )
      .run(now, now + 3_600_000, now + 3_600_000);
    early.close();

    const store = openStore();
    expect(await store.get('01EARLY')).toMatchObject({ payload: { n: 1 }, idempotencyKey: 'k' });
    expect(
      (await store.insert([message('u', { idempotencyKey: 'k', payload: { n: 1 } })])).ids,
    ).toEqual(['01EARLY']);
    await store.insert([message('u')]);
    // Counted once by the code, not a second time by the old trigger.
    expect(await store.countByStatus()).toEqual({ pending: 2, delivered: 0, acked: 0, failed: 0 });
  });

  it('opens a file of schema version 1 (open messages indexed on status) and keeps its messages and counts', async () => {
    // Version 1's schema, as its build wrote it.
    const v1 = new Database(path);
    v1.pragma('journal_mode = WAL');
    v1.exec(`
      CREATE TABLE messages (
        id TEXT NOT NULL PRIMARY KEY, to_user TEXT NOT NULL, payload TEXT NOT NULL,
        created_at INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER, delivered_at INTEGER, acked_at INTEGER, failed_at INTEGER,
        fail_reason TEXT, idempotency_key TEXT, expires_at INTEGER NOT NULL,
        purge_at INTEGER NOT NULL);
      CREATE INDEX messages_unacked ON messages (to_user, created_at, id)
        WHERE status IN ('pending', 'delivered');
      CREATE INDEX messages_due ON messages (next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
      CREATE UNIQUE INDEX messages_idempotency ON messages (idempotency_key, to_user)
        WHERE idempotency_key IS NOT NULL;
      CREATE INDEX messages_purge ON messages (purge_at);
      CREATE TABLE status_counts (status TEXT NOT NULL PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO status_counts VALUES ('pending', 0), ('delivered', 0), ('acked', 0), ('failed', 0);
      CREATE TRIGGER messages_counted_delete AFTER DELETE ON messages BEGIN
        UPDATE status_counts SET n = n - 1 WHERE status = OLD.status; END;
      CREATE TRIGGER messages_counted_update AFTER UPDATE OF status ON messages
        WHEN OLD.status <> NEW.status BEGIN
        UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;
        UPDATE status_counts SET n = n + 1 WHERE status = NEW.status; END;
      CREATE TABLE health (k TEXT NOT NULL PRIMARY KEY, at INTEGER NOT NULL);
      PRAGMA user_version = 1;`);
    const now = Date.now();
    const row = v1.prepare(
      `INSERT INTO messages (id, to_user, payload, created_at, status, attempts, next_attempt_at,
         delivered_at, acked_at, failed_at, fail_reason, idempotency_key, expires_at, purge_at)
       VALUES (?, 'u', '{"n":1}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const exp = now + HOUR;
    row.run('01PENDING', now - 4, 'pending', 0, now + 5000, null, null, null, null, 'k', exp, exp);
    row.run(
      '01DELIVERED',
      now - 3,
      'delivered',
      1,
      now + 9000,
      now,
      null,
      null,
      null,
      null,
      exp,
      exp,
    );
    row.run('01ACKED', now - 2, 'acked', 1, null, now, now, null, null, null, exp, now + 1000);
    row.run('01FAILED', now - 1, 'failed', 3, null, now, null, now, 'gone', null, exp, exp);
    v1.exec(`UPDATE status_counts SET n = 1`);
    v1.close();

    const store = openStore();
    const counts = { pending: 1, delivered: 1, acked: 1, failed: 1 };
    expect(await store.countByStatus()).toEqual(counts);
    expect(await store.get('01FAILED')).toMatchObject({ status: 'failed', failReason: 'gone' });
    expect((await store.listUnacked('u', 10)).map((m) => m.id)).toEqual([
      '01PENDING',
      '01DELIVERED',
    ]);
    expect(
      (await store.insert([message('u', { idempotencyKey: 'k', payload: { n: 1 } })])).ids,
    ).toEqual(['01PENDING']);
    await store.markDelivered(['01PENDING'], new Date(), { baseMs: 1000, maxMs: 5000 });
    expect(await store.countByStatus()).toEqual({ ...counts, pending: 0, delivered: 2 });
    expect(
      await store.markAcked([{ userId: 'u', ids: ['01DELIVERED', '01FAILED'] }], new Date()),
    ).toBe(2);
    expect(await store.countByStatus()).toEqual({ pending: 0, delivered: 1, acked: 3, failed: 0 });
    expect((await store.listUnacked('u', 10)).map((m) => m.id)).toEqual(['01PENDING']);
    expect(await store.purge(new Date(now + 2 * HOUR))).toBe(4);
    expect(await store.countByStatus()).toEqual({ pending: 0, delivered: 0, acked: 0, failed: 0 });

    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      const indexes = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        .pluck()
        .all();
      expect(indexes).toContain('messages_open');
      expect(indexes).not.toContain('messages_unacked');
    } finally {
      db.close();
    }
  });

  it('the file is in WAL mode and keeps messages, states and counts across a reopen', async () => {
    const store = openStore();
    const a = message('u', { idempotencyKey: 'k' });
    const b = message('u');
    await store.insert([a, b]);
    await store.markDelivered([a.id], new Date(), { baseMs: 1000, maxMs: 5000 });
    await store.close();
    open.splice(0);

    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    const again = openStore();
    expect(await again.get(a.id)).toMatchObject({
      status: 'delivered',
      attempts: 1,
      idempotencyKey: 'k',
    });
    expect(await again.countByStatus()).toEqual({
      pending: 1,
      delivered: 1,
      acked: 0,
      failed: 0,
    });
    expect((await again.insert([message('u', { idempotencyKey: 'k' })])).ids).toEqual([a.id]);
  });

  it('the background purge deletes in bounded batches until nothing is due', async () => {
    const store = openStore({ purgeBatch: 700 });
    const longAgo = new Date(Date.now() - 3 * HOUR);
    const acked = Array.from({ length: 5000 }, () => message('u'));
    const kept = Array.from({ length: 300 }, () => message('u'));
    await store.insert([...acked, ...kept]);
    // Acked two hours before the 1 h retention would have run out.
    expect(await store.markAcked([{ userId: 'u', ids: acked.map((m) => m.id) }], longAgo)).toBe(
      5000,
    );

    expect(await store.purge(new Date())).toBe(700);
    expect(await store.purgeInBackground()).toBe(4300);

    expect(await store.countByStatus()).toEqual({
      pending: 300,
      delivered: 0,
      acked: 0,
      failed: 0,
    });
    expect(await store.get(acked[4999]!.id)).toBeUndefined();
    expect((await store.listUnacked('u', 1000)).map((m) => m.id)).toEqual(kept.map((m) => m.id));
  });

  it('purges on its own timer, and gives the freed pages back to the file system', async () => {
    const store = SqliteStore.open({ path, purgeIntervalMs: 50, purgeBatch: 500 });
    open.push(store);
    const msgs = Array.from({ length: 3000 }, () => message('u', { payload: 'x'.repeat(2000) }));
    await store.insert(msgs);
    const kept = message('u');
    await store.insert([kept]);
    const before = store.fileStats().pages;
    await store.markAcked(
      [{ userId: 'u', ids: msgs.map((m) => m.id) }],
      new Date(Date.now() - 3 * HOUR),
    );

    const deadline = Date.now() + 10_000;
    while ((await store.countByStatus()).acked > 0 || store.fileStats().pages > before / 2) {
      if (Date.now() > deadline) {
        throw new Error(
          `purge timer did not empty the store: ${JSON.stringify(await store.countByStatus())}, ` +
            `${store.fileStats().pages} of ${before} pages`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await store.countByStatus()).toEqual({ pending: 1, delivered: 0, acked: 0, failed: 0 });
    expect(await store.get(kept.id)).toBeDefined();
  });

  it('a full disk fails the whole insert batch as unavailable, never as a refusal', async () => {
    const store = SqliteStore.open({ path, purgeIntervalMs: 0, maxFileBytes: 512 * 1024 });
    open.push(store);
    const stored: string[] = [];
    let failure: unknown;
    while (failure === undefined) {
      const batch = Array.from({ length: 20 }, () => message('u', { payload: 'x'.repeat(1000) }));
      const results = await Promise.allSettled(batch.map((m) => store.insert([m])));
      for (const [i, r] of results.entries()) {
        if (r.status === 'rejected') failure = r.reason;
        else {
          // Never a refusal: a full disk is not the message's fault.
          expect(r.value.refused).toEqual([]);
          stored.push(batch[i]!.id);
        }
      }
      // All or nothing per batch: one commit.
      expect(results.every((r) => r.status === results[0]!.status)).toBe(true);
    }
    expect(String(failure)).toMatch(/full/i);
    expect(stored.length).toBeGreaterThan(0);
    for (const id of stored.slice(-5)) expect(await store.get(id)).toBeDefined();
    // Other writes go on where they need no new page.
    expect(await store.markAcked([{ userId: 'u', ids: stored.slice(0, 5) }], new Date())).toBe(5);
  });

  it('ping writes, and fails once the store is closed', async () => {
    const store = openStore();
    await expect(store.ping()).resolves.toBeUndefined();
    await store.close();
    await expect(store.ping()).rejects.toThrow();
    await expect(store.insert([message('u')])).rejects.toThrow(/closed/);
  });

  it('two processes claiming the same file each get every due message at most once', async () => {
    const store = openStore();
    const now = Date.now();
    const msgs = Array.from({ length: 10_000 }, (_, n) =>
      message(`u${n % 50}`, { nextAttemptAt: new Date(now - 60_000 + n) }),
    );
    await store.insert(msgs);
    const claimers = await Promise.all([1, 2].map(() => child(['claim', path, String(now)])));
    for (const c of claimers) c.proc.stdin!.write('go\n');

    const results = await Promise.all(
      claimers.map(async (c) => {
        const line = await c.lines.next();
        expect(await exited(c.proc), c.stderr()).toBe(0);
        return JSON.parse(line.value as string) as string[];
      }),
    );

    const all = results.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(msgs.length);
    // Both took part: the lock is taken per page, not for the whole drain.
    expect(results.every((ids) => ids.length > 0)).toBe(true);
    expect(await store.claimDue(new Date(now), 10, 1000)).toEqual([]);
  }, 60_000);

  it('six processes opening one new file at the same moment all open it', async () => {
    // Two collect processes on one host start together (the Consul-cluster suite has them):
    // a CI run lost one to "database is locked" while it created the schema.
    const answers: string[] = [];
    for (let round = 0; round < 3; round++) {
      const file = join(dir, `race-${round}.sqlite`);
      const at = Date.now() + 3000;
      const openers = await Promise.all(
        Array.from({ length: 6 }, () => child(['open', file, String(at)])),
      );
      for (const o of openers) {
        answers.push(String((await o.lines.next()).value));
        expect(await exited(o.proc), o.stderr()).toBe(0);
      }
    }
    expect(answers).toEqual(Array(18).fill('opened'));
  }, 60_000);

  it('a process killed with SIGKILL mid-ingest loses no insert that resolved', async () => {
    const c = await child(['insert', path]);
    const resolved: string[] = [];
    for (;;) {
      const next = await c.lines.next();
      if (next.done) throw new Error(`child ended early: ${c.stderr()}`);
      resolved.push(next.value);
      if (resolved.length >= 2000) break;
    }
    c.proc.kill('SIGKILL');
    expect(await exited(c.proc)).toBe('SIGKILL');

    const store = openStore();
    const missing: string[] = [];
    for (const id of resolved) if (!(await store.get(id))) missing.push(id);
    expect(missing).toEqual([]);
    const counts = await store.countByStatus();
    expect(counts.pending).toBeGreaterThanOrEqual(resolved.length);
  }, 60_000);
});
