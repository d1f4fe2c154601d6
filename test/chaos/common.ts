// What every fault of the chaos suite shares: the shape of a row, timing helpers, the
// standard harness (a cluster under load with a population of library clients), and
// clients that record what reaches them (plain `ws` ones and library ones from dist/).
import { join } from 'node:path';
import WebSocket from 'ws';
import type * as ClientModule from '../../src/client/push-client.js';
import type { PushClient, PushClientOptions } from '../../src/client/push-client.js';
import { PROJECT_ROOT } from '../../src/launcher/binaries.js';
import { waitFor } from '../../src/launcher/child.js';
import type { MessageFrame, ServerFrame } from '../../src/protocol/frames.js';
import { startCluster, type TestCluster } from '../support/cluster.js';
import { LoadGenerator, Population, settle, type Sent } from '../support/load.js';

export const quick = process.argv.includes('--quick');
export const STORE_DIR_ENV = 'CHAOS_STORE_DIR';

/** What one fault reports: a row of the table. */
export interface Result {
  detectedMs?: number;
  recoveredMs?: number;
  sent: number;
  delivered: number;
  duplicates: number;
  lost: number;
  lostIds: string[];
  note: string;
  /** A check of the row other than loss that failed (e.g. a deadline): the run fails too. */
  problem?: string;
}

export interface Fault {
  name: string;
  run(o: { sqlitePath: string }): Promise<Result>;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const since = (t0: number): number => performance.now() - t0;
export const fmt = (ms: number | undefined): string =>
  ms === undefined ? '—' : `${(ms / 1000).toFixed(2)} s`;

export async function passingIds(consulAddr: string, service: string): Promise<Set<string>> {
  const res = await fetch(`http://${consulAddr}/v1/health/service/${service}?passing=true`);
  return new Set(((await res.json()) as { Service: { ID: string } }[]).map((e) => e.Service.ID));
}

/** Time (ms since t0) until probe holds, or undefined if it did not within timeoutMs. */
export async function timeUntil(
  probe: () => Promise<boolean> | boolean,
  timeoutMs: number,
  t0: number,
): Promise<number | undefined> {
  try {
    await waitFor('condition', probe, timeoutMs, 20);
    return since(t0);
  } catch {
    return undefined;
  }
}

/** Time until the instance has left the passing set in Consul. */
export const untilEvicted = (
  c: TestCluster,
  service: string,
  id: string,
  t0: number,
  timeoutMs = 15_000,
): Promise<number | undefined> =>
  timeUntil(async () => !(await passingIds(c.deps.consul.addr, service)).has(id), timeoutMs, t0);

/** Sends SIGSTOP to a pid for `ms`, SIGCONT always follows (also on error). */
export async function stopFor(
  pid: number,
  ms: number,
  meanwhile: (t0: number) => Promise<void> = async () => undefined,
): Promise<void> {
  const t0 = performance.now();
  process.kill(pid, 'SIGSTOP');
  try {
    await meanwhile(t0);
    await sleep(Math.max(0, ms - since(t0)));
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

export type Times = { detectedMs?: number; recoveredMs?: number; note?: string; problem?: string };

/**
 * The standard row: a cluster (two push nodes, two dispatch), a population of library
 * clients, a steady load; the fault, two more seconds of load, then a wait until every
 * accepted message arrived (or SETTLE_MS: the rest is lost).
 */
export async function underLoad(
  sqlitePath: string,
  inject: (c: TestCluster, pop: Population) => Promise<Times>,
  o: { env?: Record<string, string>; users?: number; rate?: number; settleMs?: number } = {},
): Promise<Result> {
  const users = Array.from({ length: o.users ?? (quick ? 20 : 100) }, (_, i) => `chaos-user-${i}`);
  const cluster = await startCluster({
    pushNodes: 2,
    env: { ACK_TIMEOUT: '3s', SQLITE_PATH: sqlitePath, ...o.env },
  });
  const pop = new Population(cluster, users);
  try {
    await cluster.spawn('dispatch');
    await pop.start();
    const gen = new LoadGenerator(() => cluster.collect.url, users, o.rate ?? (quick ? 50 : 200));
    gen.start();
    await sleep(2000);
    let times: Times;
    try {
      times = await inject(cluster, pop);
    } finally {
      await sleep(2000);
      await gen.stop();
    }
    const outcome = await settle(pop, gen, o.settleMs ?? 30_000);
    return { ...times, ...outcome, note: times.note ?? '' };
  } finally {
    pop.stop();
    await cluster.stop();
  }
}

/** What reached one user: ids in order of first arrival, with when, and how many repeats. */
export class Inbox {
  readonly order: string[] = [];
  readonly firstAt = new Map<string, number>();
  duplicates = 0;
  add(id: string): void {
    if (this.firstAt.has(id)) return void this.duplicates++;
    this.firstAt.set(id, Date.now());
    this.order.push(id);
  }
}

/** A plain `ws` client that acks every message and never reconnects by itself. */
export class RawClient {
  readonly inbox = new Inbox();
  closeCode: number | undefined;
  closeReason = '';
  private constructor(
    readonly userId: string,
    readonly ws: WebSocket,
  ) {
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as ServerFrame;
      if (frame.type !== 'message') return;
      this.inbox.add((frame as MessageFrame).id);
      ws.send(JSON.stringify({ type: 'ack', id: (frame as MessageFrame).id }));
    });
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
    });
  }

  static connect(wsUrl: string, userId: string, token: string): Promise<RawClient> {
    const ws = new WebSocket(`${wsUrl}?token=${encodeURIComponent(token)}`);
    const client = new RawClient(userId, ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
      ws.once('unexpected-response', (_q, res) =>
        reject(new Error(`upgrade refused: ${res.statusCode}`)),
      );
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }
}

/** The client library as the package ships it (dist/), with its types from src/. */
export async function loadClientLibrary(): Promise<typeof ClientModule> {
  const file = join(PROJECT_ROOT, 'dist', 'client', 'push-client.js');
  return (await import(file)) as typeof ClientModule;
}

/** Library clients (dedupe on, auto-ack), one per user, recording what arrives. */
export class LibClients {
  readonly clients = new Map<string, PushClient>();
  readonly inboxes = new Map<string, Inbox>();

  constructor(
    private readonly connectUrl: string,
    private readonly token: (userId: string) => Promise<string>,
    private readonly extra: Partial<PushClientOptions> = {},
  ) {}

  async start(users: readonly string[], timeoutMs = 20_000): Promise<void> {
    const { PushClient } = await loadClientLibrary();
    for (const userId of users) {
      const token = await this.token(userId);
      const inbox = new Inbox();
      const client = new PushClient({
        connectUrl: this.connectUrl,
        getToken: () => token,
        WebSocket: WebSocket as unknown as ClientModule.WebSocketConstructor,
        backoff: { initialMs: 100, maxMs: 1000 },
        ...this.extra,
      });
      client.on('message', (m) => inbox.add(m.id));
      client.on('duplicate', () => inbox.duplicates++);
      client.start();
      this.clients.set(userId, client);
      this.inboxes.set(userId, inbox);
    }
    await waitFor('every library client connected', () => this.allOpen(), timeoutMs, 20);
  }

  allOpen(): boolean {
    return [...this.clients.values()].every((c) => c.connectionState === 'open');
  }

  /** Users whose client is open on the node listening on `port`. */
  usersOn(port: number): string[] {
    return [...this.clients]
      .filter(([, c]) => c.connectionState === 'open' && c.nodeUrl?.includes(`:${port}/`))
      .map(([u]) => u);
  }

  stop(): void {
    for (const c of this.clients.values()) c.stop();
  }
}

/** Counts what of `sent` reached its user's inbox, waiting up to timeoutMs for the rest. */
export async function settleInboxes(
  sent: readonly Sent[],
  inboxOf: (userId: string) => Inbox | undefined,
  timeoutMs: number,
): Promise<Pick<Result, 'sent' | 'delivered' | 'duplicates' | 'lost' | 'lostIds'>> {
  const missing = (): Sent[] => sent.filter((s) => !inboxOf(s.to)?.firstAt.has(s.id));
  await waitFor('every accepted message delivered', () => missing().length === 0, timeoutMs, 50)
    // reported as lost below
    .catch(() => undefined);
  const lost = missing();
  const users = new Set(sent.map((s) => s.to));
  let duplicates = 0;
  for (const u of users) duplicates += inboxOf(u)?.duplicates ?? 0;
  return {
    sent: sent.length,
    delivered: sent.length - lost.length,
    duplicates,
    lost: lost.length,
    lostIds: lost.slice(0, 10).map((s) => `${s.to}:${s.id}`),
  };
}

/** The longest wait, in ms, between a 202 and the arrival of a message that arrived. */
export function slowestMs(
  sent: readonly Sent[],
  inboxOf: (userId: string) => Inbox | undefined,
): number {
  let worst = 0;
  for (const s of sent) {
    const at = inboxOf(s.to)?.firstAt.get(s.id);
    if (at !== undefined) worst = Math.max(worst, at - s.at);
  }
  return worst;
}
