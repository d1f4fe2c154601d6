import { FIRST_PAGES_CONCURRENCY } from '../core/tuning.js';
import type { Envelope } from '../protocol/hops.js';
import type { MessageStore } from '../store/message-store.js';
import { envelopeOf } from './handoff.js';

/**
 * The first replay page of each user of a burst of connects (`unackedFirstPagesHop`), in
 * request order. The answer stops taking pages once it holds `budgetBytes` of frames: the
 * users past that get null and are asked for alone. The first page is always taken, as a
 * request for that user alone would take it.
 */
export async function firstPages(
  store: Pick<MessageStore, 'listUnacked'>,
  userIds: readonly string[],
  limit: number,
  budgetBytes: number,
): Promise<{ pages: (Envelope[] | null)[] }> {
  const pages: (Envelope[] | null)[] = [];
  let bytes = 0;
  // A few users at a time: a MongoDB store answers them concurrently.
  for (let i = 0; i < userIds.length; i += FIRST_PAGES_CONCURRENCY) {
    const users = userIds.slice(i, i + FIRST_PAGES_CONCURRENCY);
    if (bytes > budgetBytes) {
      pages.push(...users.map(() => null));
      continue;
    }
    const found = await Promise.all(users.map((u) => store.listUnacked(u, limit)));
    for (const messages of found) {
      if (bytes > budgetBytes) {
        pages.push(null);
        continue;
      }
      const page = messages.map(envelopeOf);
      for (const m of page) bytes += Buffer.byteLength(m.frame);
      pages.push(bytes > budgetBytes && pages.length > 0 ? null : page);
    }
  }
  return { pages };
}
