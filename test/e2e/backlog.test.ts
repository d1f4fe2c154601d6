// A user who comes online with more unacked messages than one replay page holds gets all of
// them, in order, on a plain socket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { stageCount, waitForQuiet } from '../support/metrics.js';
import { mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';

let cluster: TestCluster;

beforeAll(async () => {
  // Rechecked once 1 s after ingestion, then left waiting for the connect.
  cluster = await startCluster({ pushNodes: 1, env: { UNROUTED_RECHECK: '1s' } });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('a backlog larger than a replay page', () => {
  it('reaches a user who connects with 1,500 unacked messages: all of them, in order', async () => {
    const ids: string[] = [];
    for (let batch = 0; batch < 3; batch++) {
      const messages = Array.from({ length: 500 }, (_, i) => ({
        to: 'olga',
        payload: batch * 500 + i,
      }));
      ids.push(...(await postMessages(cluster, { messages })));
    }
    // Every message has been handed off, found unrouted, rechecked: now they wait.
    await waitFor(
      '3,000 hand-offs',
      async () => (await stageCount(cluster.dispatch.url, 'handed_off')) >= 3000,
      20_000,
    );
    await waitForQuiet(cluster.dispatch.url, 'handed_off', 2500);
    const olga = await TestClient.connect(
      wsUrlOf(cluster, 0),
      'olga',
      await mintToken(cluster, 'olga'),
      {
        ack: true,
      },
    );
    try {
      const got = await olga.waitForMessages(1500, 20_000);
      expect(got.map((m) => m.id)).toEqual(ids);
      expect(got.map((m) => m.payload)).toEqual(ids.map((_, i) => i));
    } finally {
      olga.close();
    }
  });
});
