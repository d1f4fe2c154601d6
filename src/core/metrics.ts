import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The stages a message passes, as counted by push_messages_total{stage}. */
export type Stage =
  | 'ingested' // collect: stored and answered 202
  | 'handed_off' // dispatch: received in a hand-off from collect
  | 'forwarded' // dispatch: handed to a push node
  | 'pushed' // push: written to a socket (one per socket)
  | 'delivered' // push: reached at least one socket of its user
  | 'acked' // collect: acked by the client
  | 'ack_refused' // push: an ack collect refused for good (dropped; the message is pushed again)
  | 'redelivered' // collect: handed to dispatch again by the sweeper
  | 'deferred' // collect: stored, its hand-off left to the sweeper (the hand-off backlog was full)
  | 'failed'; // collect: never acked after MAX_ATTEMPTS pushes

export type Dependency = 'consul' | 'redis' | 'mongodb' | 'sqlite';

/**
 * Every metric a service exposes on /metrics, defined in one place so that names and
 * labels are the same in code, dashboards and the README. Each process has its own
 * Prometheus registry: no global state.
 */
export class Metrics {
  readonly prometheus = new Registry();
  private readonly messages: Counter<'stage'>;
  readonly connections: Gauge;
  readonly latency: Histogram;
  readonly storedByStatus: Gauge<'status'>;
  readonly evictions: Counter;
  private readonly dependencyErrors: Counter<'dependency'>;
  readonly httpRequests: Counter<'route' | 'status'>;
  readonly tokenChecks: Counter<'by'>;
  /** Refreshes gauges that are read from elsewhere (the store's counts) just before a scrape. */
  private readonly beforeScrape: (() => Promise<void>)[] = [];

  constructor(service: string) {
    this.prometheus.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.prometheus });
    const registers = [this.prometheus];
    // A metric only one kind of service moves is exposed by that kind only.
    const on = (...services: string[]): Registry[] => (services.includes(service) ? registers : []);
    this.messages = new Counter({
      name: 'push_messages_total',
      help: 'Messages passing each stage of the data path',
      labelNames: ['stage'],
      registers,
    });
    this.connections = new Gauge({
      name: 'push_connections',
      help: 'Open WebSocket connections on this push node',
      registers: on('push'),
    });
    this.latency = new Histogram({
      name: 'push_ingest_to_socket_seconds',
      help: 'Time from ingestion (createdAt) to the write on a socket, measured on the push node',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: on('push'),
    });
    this.storedByStatus = new Gauge({
      name: 'push_messages_stored',
      help: 'Messages in the store by status (pending = waiting for a route, delivered = waiting for an ack)',
      labelNames: ['status'],
      registers: on('collect'),
    });
    this.evictions = new Counter({
      name: 'push_node_evictions_total',
      help: 'Push nodes that left the passing set in Consul, as seen by this dispatch instance',
      registers: on('dispatch'),
    });
    this.dependencyErrors = new Counter({
      name: 'push_dependency_errors_total',
      help: 'Failed calls to Consul, Redis, MongoDB or SQLite',
      labelNames: ['dependency'],
      registers,
    });
    this.httpRequests = new Counter({
      name: 'push_http_requests_total',
      help: 'HTTP requests answered, by route and status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.tokenChecks = new Counter({
      name: 'push_token_checks_total',
      help: "Client tokens checked on connect (cache hits aside), by who judged them: node (with auth's published key) or auth",
      labelNames: ['by'],
      registers: on('push'),
    });
  }

  /** The counter of one stage of the data path, for `.inc(n)`. */
  stage(stage: Stage): { inc(n?: number): void } {
    return this.messages.labels({ stage });
  }

  /** Counts a failed call to a dependency. */
  dependencyFailed(dependency: Dependency): void {
    this.dependencyErrors.inc({ dependency });
  }

  onScrape(hook: () => Promise<void>): void {
    this.beforeScrape.push(hook);
  }

  /** The text exposition, after refreshing what is read at scrape time. */
  async scrape(): Promise<string> {
    await Promise.allSettled(this.beforeScrape.map((hook) => hook()));
    return this.prometheus.metrics();
  }
}
