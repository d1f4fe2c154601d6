import WebSocket from 'ws';
import { PushClient, type WebSocketConstructor } from '../../src/client/push-client.js';
import { waitFor } from '../../src/launcher/child.js';
import { KEYS, type TestCluster } from './cluster.js';
import { mintToken } from './clients.js';

/** Clients of a population of users, built on the client library, recording what arrives. */
export class Population {
  readonly clients: { userId: string; client: PushClient }[] = [];
  /** user → ids received (after the client library's dedupe) */
  readonly received = new Map<string, Set<string>>();
  /** Deliveries the client library dropped as duplicates. */
  duplicates = 0;

  constructor(
    private readonly cluster: TestCluster,
    readonly users: string[],
    private readonly clientsPerUser = 1,
  ) {}

  async start(): Promise<void> {
    for (const userId of this.users) {
      const token = await mintToken(this.cluster, userId, 3600);
      this.received.set(userId, new Set());
      for (let i = 0; i < this.clientsPerUser; i++) {
        const client = new PushClient({
          connectUrl: `${this.cluster.dispatch.url}/v1/connect`,
          getToken: () => token,
          WebSocket: WebSocket as unknown as WebSocketConstructor,
          backoff: { initialMs: 100, maxMs: 1000 },
        });
        client.on('message', (m) => {
          (this.received.get(userId) as Set<string>).add(m.id);
        });
        client.on('duplicate', () => this.duplicates++);
        client.start();
        this.clients.push({ userId, client });
      }
    }
    await this.waitAllOpen(15_000);
  }

  async waitAllOpen(timeoutMs: number): Promise<void> {
    await waitFor(
      'every client connected',
      () => this.clients.every((c) => c.client.connectionState === 'open'),
      timeoutMs,
      20,
    );
  }

  /** Clients currently connected to a push node (by its ws URL). */
  onNode(port: number): number {
    return this.clients.filter(
      (c) => c.client.connectionState === 'open' && c.client.nodeUrl?.includes(`:${port}/`),
    ).length;
  }

  stop(): void {
    for (const { client } of this.clients) client.stop();
  }
}

export interface Sent {
  id: string;
  to: string;
  at: number;
}

/**
 * Posts messages to collect at a steady rate, round-robin over the users, for as long
 * as it runs (and never more than `maxMessages`). Only 202s count as sent: that is the
 * moment the cluster promises delivery.
 */
export class LoadGenerator {
  readonly sent: Sent[] = [];
  refused = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = new Set<Promise<void>>();
  private n = 0;

  constructor(
    private readonly ingestUrl: () => string,
    private readonly users: string[],
    private readonly perSecond: number,
    private readonly maxMessages = 100_000,
  ) {}

  start(): void {
    const every = 1000 / this.perSecond;
    let due = performance.now();
    const tick = (): void => {
      const now = performance.now();
      while (due <= now && this.n < this.maxMessages) {
        due += every;
        const p = this.postOne().finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      }
      if (this.n < this.maxMessages)
        this.timer = setTimeout(tick, Math.max(1, due - performance.now()));
    };
    tick();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.allSettled([...this.inFlight]);
  }

  private async postOne(): Promise<void> {
    const to = this.users[this.n++ % this.users.length] as string;
    try {
      const res = await fetch(`${this.ingestUrl()}/v1/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${KEYS.INGEST_API_KEY}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ to, payload: { n: this.n, at: Date.now() } }),
        signal: AbortSignal.timeout(5000),
      });
      if (res.status !== 202) {
        this.refused++;
        await res.arrayBuffer();
        return;
      }
      const { ids } = (await res.json()) as { ids: string[] };
      this.sent.push({ id: ids[0] as string, to, at: Date.now() });
    } catch {
      this.refused++;
    }
  }
}

export interface Outcome {
  sent: number;
  delivered: number;
  lost: number;
  duplicates: number;
  lostIds: string[];
}

/** Waits until every accepted message has reached its user, or the deadline; counts the rest as lost. */
export async function settle(
  pop: Population,
  gen: LoadGenerator,
  timeoutMs: number,
): Promise<Outcome> {
  const missing = (): Sent[] => gen.sent.filter((s) => !pop.received.get(s.to)?.has(s.id));
  try {
    await waitFor('every accepted message delivered', () => missing().length === 0, timeoutMs, 50);
  } catch {
    // reported as lost below
  }
  const lost = missing();
  return {
    sent: gen.sent.length,
    delivered: gen.sent.length - lost.length,
    lost: lost.length,
    duplicates: pop.duplicates,
    lostIds: lost.slice(0, 10).map((s) => `${s.to}:${s.id}`),
  };
}
