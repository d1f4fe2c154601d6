// Run by test/unit/journal.test.ts as its own process, to be killed with SIGKILL: opens a
// journaled MemoryStore and inserts until killed, printing each id once its insert resolved.
import { monotonicFactory } from 'ulid';
import { MemoryStore } from '../../src/store/memory-store.js';

const journalPath = process.argv[2];
if (!journalPath) throw new Error('usage: journal-child <journal path>');
const ulid = monotonicFactory();
const store = await MemoryStore.open({ journalPath });
process.stdout.write(`ready ${store.size}\n`);

for (;;) {
  const now = Date.now();
  const batch = Array.from({ length: 25 }, () => ({
    id: ulid(),
    to: 'user',
    payload: { text: 'x'.repeat(200) },
    createdAt: new Date(now),
    expiresAt: new Date(now + 3_600_000),
  }));
  await Promise.all(
    batch.map(async (m) => {
      await store.insert([m]);
      process.stdout.write(`${m.id}\n`);
    }),
  );
  // Updates are journaled without waiting: they may or may not survive the kill.
  await store.markDelivered(
    batch.slice(0, 10).map((m) => m.id),
    new Date(),
    { baseMs: 1000, maxMs: 5000 },
  );
}
