// Row 12: a user with 5,000 pending messages connects with a plain `ws` client that acks
// everything: all 5,000 must arrive, in the order they were accepted, on that one socket.
import { KEYS, startCluster } from '../../support/cluster.js';
import { mintToken, wsUrlOf } from '../../support/clients.js';
import type { Sent } from '../../support/load.js';
import { RawClient, settleInboxes, type Fault } from '../common.js';

const BACKLOG = 5000;
const PER_REQUEST = 500;

export const backlogFault: Fault = {
  name: '12. a user with 5,000 pending messages connects (plain ws, acks all)',
  async run({ sqlitePath }) {
    const c = await startCluster({
      pushNodes: 2,
      env: { ACK_TIMEOUT: '3s', SQLITE_PATH: sqlitePath },
    });
    const user = 'backlog-user';
    let client: RawClient | undefined;
    try {
      // Sequential requests, each a batch in order: ids are accepted in this order.
      const sent: Sent[] = [];
      for (let from = 0; from < BACKLOG; from += PER_REQUEST) {
        const messages = Array.from({ length: PER_REQUEST }, (_, i) => ({
          to: user,
          payload: { n: from + i },
        }));
        const res = await fetch(`${c.collect.url}/v1/messages`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({ messages }),
        });
        if (res.status !== 202) throw new Error(`POST: ${res.status} ${await res.text()}`);
        for (const id of ((await res.json()) as { ids: string[] }).ids)
          sent.push({ id, to: user, at: Date.now() });
      }
      const start = Date.now();
      client = await RawClient.connect(wsUrlOf(c, 0), user, await mintToken(c, user, 3600));
      const inbox = client.inbox;
      const outcome = await settleInboxes(sent, () => inbox, 60_000);
      const rank = new Map(sent.map((s, i) => [s.id, i]));
      let inversions = 0;
      let firstInversion = '';
      for (let i = 1; i < inbox.order.length; i++) {
        const a = rank.get(inbox.order[i - 1]!) ?? -1;
        const b = rank.get(inbox.order[i]!) ?? -1;
        if (b < a) {
          inversions++;
          firstInversion ||= `#${a} then #${b} at arrival ${i}`;
        }
      }
      const last = Math.max(...inbox.firstAt.values());
      const closed = client.open
        ? ''
        : `; socket closed with ${client.closeCode} ${client.closeReason}`;
      return {
        recoveredMs: outcome.lost === 0 ? last - start : undefined,
        ...outcome,
        note:
          `recovered = all arrived after connecting; ` +
          (inversions === 0
            ? 'in order'
            : `${inversions} out of order (first: ${firstInversion})`) +
          closed,
        problem: inversions === 0 ? undefined : `${inversions} out of order`,
      };
    } finally {
      client?.ws.terminate();
      await c.stop();
    }
  },
};
