// Row 11: one 900 KB message to 50 connected users (library clients). The cluster runs
// with the limits raised so that it may accept it: MAX_PAYLOAD_BYTES 1 MiB, MAX_BODY_BYTES
// 2 MiB and MAX_REQUEST_PAYLOAD_BYTES 64 MiB (900 KB × 50 recipients is 45 MB, more than
// the default 16 MiB). A refusal, or a 202 and no delivery, is what this row reports.
import { KEYS, startCluster } from '../../support/cluster.js';
import { mintToken } from '../../support/clients.js';
import type { Sent } from '../../support/load.js';
import { LibClients, sleep, settleInboxes, type Fault } from '../common.js';

const USERS = 50;
const PAYLOAD_BYTES = 900 * 1024;
const LIMITS = {
  MAX_PAYLOAD_BYTES: String(1024 * 1024),
  MAX_BODY_BYTES: String(2 * 1024 * 1024),
  MAX_REQUEST_PAYLOAD_BYTES: String(64 * 1024 * 1024),
};

export const bigMessageFault: Fault = {
  name: '11. one 900 KB message to 50 connected users',
  async run({ sqlitePath }) {
    const users = Array.from({ length: USERS }, (_, i) => `big-user-${i}`);
    const c = await startCluster({
      pushNodes: 2,
      env: { ACK_TIMEOUT: '3s', SQLITE_PATH: sqlitePath, ...LIMITS },
    });
    const lib = new LibClients(`${c.dispatch.url}/v1/connect`, (u) => mintToken(c, u, 3600));
    try {
      await lib.start(users);
      await sleep(500);
      // {"blob":"xxx…"} is 11 bytes of JSON around the string.
      const payload = { blob: 'x'.repeat(PAYLOAD_BYTES - 11) };
      const start = Date.now();
      const res = await fetch(`${c.collect.url}/v1/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ to: users, payload }),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      if (res.status !== 202) {
        return {
          sent: 0,
          delivered: 0,
          duplicates: 0,
          lost: 0,
          lostIds: [],
          note: `POST answered ${res.status}: ${text.slice(0, 300)}`,
          problem: `refused with ${res.status}`,
        };
      }
      const accepted = Date.now();
      const ids = (JSON.parse(text) as { ids: string[] }).ids;
      const sent: Sent[] = ids.map((id, i) => ({ id, to: users[i]!, at: Date.now() }));
      const outcome = await settleInboxes(sent, (u) => lib.inboxes.get(u), 60_000);
      const last = Math.max(...[...lib.inboxes.values()].flatMap((b) => [...b.firstAt.values()]));
      const status = await statusCounts(c.collect.url, ids);
      return {
        recoveredMs: outcome.lost === 0 ? last - start : undefined,
        ...outcome,
        note:
          `202 after ${((accepted - start) / 1000).toFixed(2)} s; recovered = last user got it; ` +
          `statuses ${JSON.stringify(status)}; limits ${JSON.stringify(LIMITS)}`,
      };
    } finally {
      lib.stop();
      await c.stop();
    }
  },
};

async function statusCounts(collectUrl: string, ids: string[]): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const id of ids) {
    const res = await fetch(`${collectUrl}/v1/messages/${id}`, {
      headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
    });
    const s = res.ok ? ((await res.json()) as { status: string }).status : `http ${res.status}`;
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}
