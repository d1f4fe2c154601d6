import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../src/launcher/child.js';
import { KEYS, startCluster, type TestCluster } from '../support/cluster.js';
import { mintToken, postMessages, TestClient, wsUrlOf } from '../support/clients.js';

let cluster: TestCluster;
const clients: TestClient[] = [];

beforeAll(async () => {
  cluster = await startCluster({
    pushNodes: 1,
    env: { ACK_TIMEOUT: '300ms', ACK_RETRY_MAX: '1s', MAX_ATTEMPTS: '3', SWEEP_INTERVAL: '100ms' },
  });
}, 90_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await cluster?.stop();
});

async function view(
  id: string,
): Promise<{ status: string; attempts: number; failReason?: string }> {
  const res = await fetch(`${cluster.collect.url}/v1/messages/${id}`, {
    headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
  });
  return (await res.json()) as { status: string; attempts: number; failReason?: string };
}

describe('redelivery of unacked messages', () => {
  it('pushes an unacked message again after the ack timeout, then marks it failed with the reason', async () => {
    const silent = await TestClient.connect(
      wsUrlOf(cluster, 0),
      'silent',
      await mintToken(cluster, 'silent'),
    );
    clients.push(silent);
    // Once a first message has arrived the connect-time replay is over: the next one takes
    // the live path only (test/e2e/attempts.test.ts races the replay).
    const [warmup] = await postMessages(cluster, { to: 'silent', payload: 'warm-up' });
    await silent.waitForMessages(1);
    silent.ws.send(JSON.stringify({ type: 'ack', id: warmup }));
    const [id] = await postMessages(cluster, { to: 'silent', payload: 'ack me, please' });
    await waitFor(
      'the message to fail',
      async () => (await view(id as string)).status === 'failed',
      15_000,
    );
    const copies = silent.messages.filter((m) => m.id === id);
    expect(copies).toHaveLength(3);
    const final = await view(id as string);
    expect(final).toMatchObject({
      status: 'failed',
      attempts: 3,
      failReason: 'not acked after 3 deliveries',
    });
    // The growing gaps between copies (backoff) are the store's job: see its contract tests.
  });

  it('stops pushing a message once the client acks a redelivered copy', async () => {
    const late = await TestClient.connect(
      wsUrlOf(cluster, 0),
      'late',
      await mintToken(cluster, 'late'),
    );
    clients.push(late);
    const [warmup] = await postMessages(cluster, { to: 'late', payload: 'warm-up' });
    await late.waitForMessages(1);
    late.ws.send(JSON.stringify({ type: 'ack', id: warmup }));
    const [id] = await postMessages(cluster, { to: 'late', payload: 'second time lucky' });
    await waitFor(
      'a second copy',
      () => late.messages.filter((m) => m.id === id).length >= 2,
      10_000,
    );
    late.ws.send(JSON.stringify({ type: 'ack', id }));
    await waitFor(
      'the message to be acked',
      async () => (await view(id as string)).status === 'acked',
      5000,
    );
    const { attempts } = await view(id as string);
    // The ack is final: a later sweep finds nothing due for it.
    await postMessages(cluster, { to: 'late', payload: 'marker' });
    await waitFor('the marker', () => late.messages.some((m) => m.payload === 'marker'), 10_000);
    expect((await view(id as string)).attempts).toBe(attempts);
    expect((await view(id as string)).status).toBe('acked');
  });
});
