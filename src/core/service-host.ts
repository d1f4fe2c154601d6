import type { Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Router from '@koa/router';
import type Koa from 'koa';
import type { ConsulClient as Consul } from './consul.js';
import type { Config } from './config.js';
import type { Hop } from '../protocol/hops.js';
import {
  canonicalPathOnly,
  closeServer,
  createApp,
  HttpError,
  httpServer,
  listen,
  readJson,
  requireBearer,
  requireInternalSecret,
} from './http.js';
import { BodyBudget } from './body-budget.js';
import { HEALTH_PROBE_MS, HEALTH_PROBE_TIMEOUT_MS, INTERNAL_BODY_FACTOR } from './tuning.js';
import { validate } from './validation.js';
import type { Logger } from './logger.js';
import { Health, type HealthProbe } from './health.js';
import { Metrics } from './metrics.js';
import { Registration } from './registry.js';

export const VERSION = '0.1.0';
const STALL_LIMIT_MS = 1000;

export interface HostOptions {
  config: Config;
  log: Logger;
  consul: Consul;
  /** What /health checks besides the lifecycle. */
  probes: Record<string, HealthProbe>;
  /** Extra meta for Consul, read at every registry sync. */
  meta?: () => Record<string, string>;
}

async function postOnly(ctx: Koa.Context, next: Koa.Next): Promise<void> {
  if (ctx.method !== 'POST') {
    ctx.set('allow', 'POST');
    throw new HttpError(405, 'method_not_allowed', `${ctx.method} is not allowed here: use POST`);
  }
  await next();
}

/** For a path `router` serves under other methods only: 405, with them in `allow`. */
function methodNotAllowed(router: Router) {
  return async (ctx: Koa.Context, next: Koa.Next): Promise<void> => {
    await next();
    if (ctx.status !== 404 || ctx.body !== undefined) return;
    const layers = router.match(ctx.path, ctx.method).path;
    if (layers.length === 0) return;
    const allowed = [...new Set(layers.flatMap((l) => l.methods))].join(', ');
    ctx.set('allow', allowed);
    throw new HttpError(
      405,
      'method_not_allowed',
      `${ctx.method} is not allowed here: use ${allowed}`,
    );
  };
}

/**
 * The frame every service lives in: a Koa app with JSON errors, /health and /metrics;
 * its public routes and its hops (internal ones behind INTERNAL_SECRET); an HTTP server
 * (and a second one for the internal hops when INTERNAL_PORT is set); its registration in
 * Consul; and a stop that undoes start in reverse — leave routing, drain, close.
 */
export class ServiceHost {
  readonly app: Koa;
  /** Public routes: case-sensitive and strict, one spelling each. */
  readonly routes = new Router({ sensitive: true, strict: true });
  /** Internal hops only, each behind the secret (see `handle`). */
  private readonly internalRoutes = new Router({ sensitive: true, strict: true });
  readonly metrics: Metrics;
  /** Request bodies read at once on the public port (MAX_BODY_BYTES_IN_FLIGHT): pass it to
   *  readJson in public routes. */
  readonly bodies: BodyBudget;
  readonly server: Server;
  port = 0;
  /**
   * The server Consul's check calls: /health only, on HEALTH_PORT. On the public port the
   * check's connection queues in the kernel behind every client connecting: under the
   * bench's reconnect storm of 15,000 clients dispatch's check found that queue full ("dial
   * tcp … i/o timeout"), and an instance that leaves routing so leaves its users without
   * live messages. A stalled or dead process still fails it: the same event loop serves it.
   */
  private readonly healthServer: Server;
  private readonly health: Health;
  healthPort = 0;
  /** With INTERNAL_PORT: the internal hops' own server, and the port it got. */
  private readonly internalServer: Server | undefined;
  internalPort: number | undefined;
  registration: Registration | undefined;
  private draining = false;
  private readonly startHooks: (() => Promise<void>)[] = [];
  private readonly startedHooks: (() => void)[] = [];
  private readonly drainHooks: (() => Promise<void>)[] = [];
  private readonly closeHooks: (() => Promise<void>)[] = [];

  constructor(private readonly o: HostOptions) {
    this.metrics = new Metrics(o.config.service);
    this.bodies = new BodyBudget(o.config.MAX_BODY_BYTES_IN_FLIGHT);
    this.app = createApp(o.log, this.countRequest);
    const loopDelay = monitorEventLoopDelay({ resolution: 20 });
    loopDelay.enable();
    this.onClose(async () => {
      loopDelay.disable();
    });
    this.health = new Health({
      probes: o.probes,
      atAnswer: {
        // A loop that stalls past a check's timeout fails the check anyway; one that stalls
        // past STALL_LIMIT_MS between two checks is as unfit to serve.
        eventLoop: () => {
          const worstMs = loopDelay.max / 1e6;
          loopDelay.reset();
          return worstMs > STALL_LIMIT_MS
            ? `event loop stalled for ${Math.round(worstMs)} ms`
            : undefined;
        },
      },
      isDraining: () => this.draining,
      intervalMs: HEALTH_PROBE_MS,
      probeTimeoutMs: HEALTH_PROBE_TIMEOUT_MS,
    });
    const health = this.health.handler;
    this.healthServer = httpServer(o.config.HTTP_REQUEST_TIMEOUT);
    this.routes.get('/health', health);
    if (o.config.INTERNAL_PORT !== undefined) {
      // Consul checks this server too: an instance is passing only if both answer.
      this.internalRoutes.get('/health', health);
      this.internalServer = httpServer(o.config.HTTP_REQUEST_TIMEOUT);
    }
    const metricsToken = o.config.secrets.METRICS_TOKEN;
    this.routes.get('/metrics', async (ctx) => {
      if (metricsToken) requireBearer(ctx, metricsToken, 'METRICS_TOKEN');
      ctx.type = this.metrics.prometheus.contentType;
      ctx.body = await this.metrics.scrape();
    });
    this.app.use(canonicalPathOnly);
    this.server = httpServer(o.config.HTTP_REQUEST_TIMEOUT);
  }

  /**
   * Serves one hop: parses and validates its request body, runs `fn`, answers its result.
   * An internal hop checks INTERNAL_SECRET before anything else runs: this is the only way
   * to register one, so no internal route exists without the check.
   */
  handle<Req, Res>(hop: Hop<Req, Res>, fn: (request: Req) => Promise<Res> | Res): void {
    const { config } = this.o;
    const internal = hop.access === 'internal';
    const limit =
      hop.maxBodyBytes ??
      (internal ? config.MAX_BODY_BYTES * INTERNAL_BODY_FACTOR : config.MAX_BODY_BYTES);
    // Peers' bodies are bounded by their own batching; anyone's, by the public budget.
    const budget = internal ? undefined : this.bodies;
    const run = async (ctx: Koa.Context): Promise<void> => {
      const request = validate(hop.request, await readJson(ctx, limit, budget));
      ctx.body = await fn(request);
    };
    if (internal)
      // Every method: the secret is checked before the method, so without it an internal
      // path answers 401 however it is called.
      this.internalRoutes.all(
        hop.path,
        requireInternalSecret(config.secrets.INTERNAL_SECRET),
        postOnly,
        run,
      );
    else this.routes.post(hop.path, run);
  }

  /** Labels by route pattern, never by raw path: ids in paths would explode the series. */
  private readonly countRequest = (ctx: Koa.Context): void => {
    const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
    this.metrics.httpRequests.inc({ route, status: String(ctx.status) });
  };

  get isDraining(): boolean {
    return this.draining;
  }

  /** Runs on start before the server listens: connect to what /health will probe. */
  onStart(hook: () => Promise<void>): void {
    this.startHooks.push(hook);
  }

  /** Runs once the instance is listening and registered. */
  onStarted(hook: () => void): void {
    this.startedHooks.push(hook);
  }

  /** Runs on stop after the instance has left routing, before the server closes. */
  onDrain(hook: () => Promise<void>): void {
    this.drainHooks.push(hook);
  }

  /** Runs on stop after the server has closed, in reverse order of registration. */
  onClose(hook: () => Promise<void>): void {
    this.closeHooks.push(hook);
  }

  async start(): Promise<void> {
    const { config, log, consul } = this.o;
    for (const hook of this.startHooks) await hook();
    await this.health.start();
    if (this.internalServer) {
      const internalApp = createApp(log, this.countRequest);
      internalApp.use(canonicalPathOnly).use(this.internalRoutes.routes());
      this.internalServer.on('request', internalApp.callback());
      this.internalPort = await listen(this.internalServer, config.HOST, config.INTERNAL_PORT ?? 0);
    } else this.app.use(this.internalRoutes.routes());
    const healthApp = createApp(log, this.countRequest);
    const healthRoutes = new Router({ sensitive: true, strict: true }).get(
      '/health',
      this.health.handler,
    );
    healthApp.use(canonicalPathOnly).use(methodNotAllowed(healthRoutes)).use(healthRoutes.routes());
    this.healthServer.on('request', healthApp.callback());
    this.healthPort = await listen(this.healthServer, config.HOST, config.HEALTH_PORT);
    this.app.use(methodNotAllowed(this.routes)).use(this.routes.routes());
    this.server.on('request', this.app.callback());
    this.port = await listen(this.server, config.HOST, config.port);
    this.registration = new Registration({
      consul,
      log,
      id: this.id,
      name: config.service,
      address: config.advertiseAddress,
      port: this.port,
      healthPort: this.healthPort,
      internalPort: this.internalPort,
      tags: [`v${VERSION}`],
      meta: () => ({ version: VERSION, ...this.o.meta?.() }),
      checkIntervalMs: config.CONSUL_CHECK_INTERVAL,
      checkTimeoutMs: config.CONSUL_CHECK_TIMEOUT,
      checkFailures: config.CONSUL_CHECK_FAILURES,
      deregisterAfterMs: config.CONSUL_DEREGISTER_AFTER,
      syncIntervalMs: config.CONSUL_SYNC_INTERVAL,
      onError: () => this.metrics.dependencyFailed('consul'),
    });
    await this.registration.start();
    for (const hook of this.startedHooks) hook();
    log.info({ port: this.port, id: this.id }, `${config.service} listening and registered`);
  }

  /** Consul's ServiceID for this instance: INSTANCE_ID, or service-address-port. */
  get id(): string {
    const { config } = this.o;
    return config.INSTANCE_ID ?? `${config.service}-${config.advertiseAddress}-${this.port}`;
  }

  async stop(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    await this.registration?.stop();
    for (const hook of this.drainHooks) await hook();
    await closeServer(this.server);
    if (this.internalServer) await closeServer(this.internalServer);
    await closeServer(this.healthServer);
    this.health.stop();
    for (const hook of [...this.closeHooks].reverse()) await hook();
    this.o.log.info(`${this.o.config.service} stopped`);
  }
}
