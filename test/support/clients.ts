import WebSocket from 'ws';
import type { MessageFrame, ServerFrame } from '../../src/protocol/frames.js';
import { waitFor } from '../../src/launcher/child.js';
import { KEYS, type TestCluster } from './cluster.js';

export async function mintToken(
  cluster: TestCluster,
  userId: string,
  ttlSeconds?: number,
): Promise<string> {
  const res = await fetch(`${cluster.auth.url}/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEYS.AUTH_ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ userId, ttlSeconds }),
  });
  if (res.status !== 201) throw new Error(`token for ${userId}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

export async function postMessages(cluster: TestCluster, body: unknown): Promise<string[]> {
  const res = await fetch(`${cluster.collect.url}/v1/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 202) throw new Error(`POST /v1/messages: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { ids: string[] }).ids;
}

export async function messageStatus(cluster: TestCluster, id: string): Promise<string> {
  const res = await fetch(`${cluster.collect.url}/v1/messages/${id}`, {
    headers: { authorization: `Bearer ${KEYS.INGEST_API_KEY}` },
  });
  if (!res.ok) throw new Error(`GET /v1/messages/${id}: ${res.status}`);
  return ((await res.json()) as { status: string }).status;
}

/** Waits until the message has `status`: a `delivered` mark is written up to a second late
 *  (collect waits for the ack that makes it moot, see DeliveredMarks). */
export async function statusBecomes(
  cluster: TestCluster,
  id: string,
  status: string,
  timeoutMs = 5000,
): Promise<void> {
  await waitFor(
    `message ${id} to be ${status}`,
    async () => (await messageStatus(cluster, id)) === status,
    timeoutMs,
    50,
  );
}

/** A raw WebSocket client that records every frame, for asserting what a user saw. */
export class TestClient {
  readonly frames: ServerFrame[] = [];
  /** performance.now() at the arrival of each frame, for latency figures. */
  readonly arrivals: number[] = [];
  closeCode: number | undefined;

  private constructor(
    readonly userId: string,
    readonly ws: WebSocket,
  ) {
    ws.on('message', (data) => {
      this.arrivals.push(performance.now());
      this.frames.push(JSON.parse(data.toString()) as ServerFrame);
    });
    ws.on('close', (code) => (this.closeCode = code));
  }

  static async connect(
    url: string,
    userId: string,
    token: string,
    opts: { ack?: boolean } = {},
  ): Promise<TestClient> {
    const ws = new WebSocket(`${url}?token=${encodeURIComponent(token)}`);
    const client = new TestClient(userId, ws);
    if (opts.ack) {
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString()) as ServerFrame;
        if (frame.type === 'message') ws.send(JSON.stringify({ type: 'ack', id: frame.id }));
      });
    }
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused: ${res.statusCode}`)),
      );
    });
    return client;
  }

  get messages(): MessageFrame[] {
    return this.frames.filter((f): f is MessageFrame => f.type === 'message');
  }

  async waitForMessages(count: number, timeoutMs = 5000): Promise<MessageFrame[]> {
    await waitFor(
      `${this.userId} to receive ${count} messages (has ${this.messages.length})`,
      () => this.messages.length >= count,
      timeoutMs,
      10,
    );
    return this.messages;
  }

  close(): void {
    this.ws.close();
  }
}

/** Push node URLs of a cluster, as /v1/connect would hand them out. */
export const wsUrlOf = (cluster: TestCluster, node: number): string =>
  `ws://127.0.0.1:${cluster.push[node]?.port}/ws`;
