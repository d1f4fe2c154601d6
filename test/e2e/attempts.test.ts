// A message's `attempts` counts its pushes: MAX_ATTEMPTS and the backoff between
// redeliveries rest on it. The awkward case is a message stored while its user connects:
// the connect's replay may push it, and its live copy, which dispatch forwards a moment
// later, is then not pushed again. It must not be counted again either.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';

let cluster: TestCluster;
const clients: TestClient[] = [];

const USERS = 20;
const MESSAGES_PER_USER = 40;

beforeAll(async () => {
  // No redelivery within the test: every copy a client gets is a first push.
  cluster = await startCluster({ pushNodes: 1, env: { ACK_TIMEOUT: '60s' } });
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

interface View {
  status: string;
  attempts: number;
}

async function view(id: string): Promise<View> {
  const res = await fetch(`${cluster.collect.url}/v1/messages/${id}`, {
    headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
  });
  return (await res.json()) as View;
}

/** Posts one message after another to `userId` and connects them (never acking) after
 *  the first few, so that later ones are stored while the connect's replay runs. */
async function connectWhilePosting(userId: string): Promise<{ ids: string[]; client: TestClient }> {
  const token = await mintToken(cluster, userId);
  const ids: string[] = [];
  let connecting: Promise<TestClient> | undefined;
  for (let i = 0; i < MESSAGES_PER_USER; i++) {
    if (i === 3) connecting = TestClient.connect(wsUrlOf(cluster, 0), userId, token);
    ids.push(...(await postMessages(cluster, { to: userId, payload: i })));
  }
  const client = await (connecting as Promise<TestClient>);
  clients.push(client);
  return { ids, client };
}

describe('attempts', () => {
  it('counts each push of a message once, also when its live copy races the replay of a connect', async () => {
    const users = await Promise.all(
      Array.from({ length: USERS }, (_, u) => connectWhilePosting(`racer-${u}`)),
    );
    for (const { ids, client } of users) {
      await waitFor(
        `${client.userId} to receive all ${ids.length} messages`,
        () => new Set(client.messages.map((m) => m.id)).size === ids.length,
        10_000,
      );
    }
    // Every delivered mark is written within a second (see DeliveredMarks).
    const all = users.flatMap(({ ids }) => ids);
    await waitFor(
      'every message to be marked delivered',
      async () => (await Promise.all(all.map(view))).every((v) => v.status === 'delivered'),
      10_000,
      200,
    );
    const miscounted: string[] = [];
    for (const { ids, client } of users) {
      for (const id of ids) {
        const pushes = client.messages.filter((m) => m.id === id).length;
        const { attempts } = await view(id);
        if (attempts !== pushes)
          miscounted.push(`${id} to ${client.userId}: pushed ${pushes}, attempts ${attempts}`);
      }
    }
    expect(miscounted).toEqual([]);
  });
});
