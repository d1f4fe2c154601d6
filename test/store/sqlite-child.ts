// Run by test/integration/sqlite-store.test.ts as its own process, on a SQLite file:
//   insert <path>          inserts until killed, printing each id once its insert resolved
//   claim <path> <now ms>  claims due messages in pages of 100 until none is left, then prints
//                          the ids it got as one JSON line
//   open <path> <at ms>    opens the store at that wall-clock time and prints "opened" or the
//                          error
import { monotonicFactory } from 'ulid';
import { SqliteStore } from '../../src/store/sqlite-store.js';

const [mode, path, nowArg] = process.argv.slice(2);
if (!path || (mode !== 'insert' && mode !== 'claim' && mode !== 'open')) {
  throw new Error('usage: sqlite-child insert|claim|open <path> [now ms]');
}
if (mode === 'open') {
  // Opens the file at the wall-clock time given, with the other children: prints "opened" or
  // the error. Sleeps to 20 ms before it, then spins, so that the opens coincide.
  process.stdout.write('ready\n');
  const at = Number(nowArg);
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now() - 20)));
  while (Date.now() < at);
  try {
    await SqliteStore.open({ path, purgeIntervalMs: 0 }).close();
    process.stdout.write('opened\n');
  } catch (err) {
    process.stdout.write(`${(err as Error).message}\n`);
  }
  process.exit(0);
}
const store = SqliteStore.open({ path, purgeIntervalMs: 0 });

if (mode === 'claim') {
  process.stdout.write('ready\n');
  // Start together with the other claimer: the parent writes a line to stdin.
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const now = new Date(Number(nowArg));
  const ids: string[] = [];
  for (;;) {
    const page = await store.claimDue(now, 100, 600_000);
    if (page.length === 0) break;
    for (const m of page) ids.push(m.id);
    // Leave the lock free a moment between pages: SQLite's busy handler sleeps and retries,
    // so a process that takes the lock again at once could drain everything alone.
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await store.close();
  process.stdout.write(`${JSON.stringify(ids)}\n`);
  process.exit(0);
}

const ulid = monotonicFactory();
process.stdout.write('ready\n');
for (;;) {
  const now = Date.now();
  const batch = Array.from({ length: 25 }, () => ({
    id: ulid(),
    to: `user-${now % 7}`,
    payload: { text: 'x'.repeat(200) },
    createdAt: new Date(now),
    expiresAt: new Date(now + 3_600_000),
    nextAttemptAt: new Date(now + 5000),
  }));
  await Promise.all(
    batch.map(async (m) => {
      await store.insert([m]);
      process.stdout.write(`${m.id}\n`);
    }),
  );
}
