import type { Server } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type Koa from 'koa';
import type { ConsulClient as Consul } from './consul.js';
import type { Config } from './config.js';
import {
  closeServer,
  createApp,
  healthRoute,
  httpServer,
  internalOnly,
  listen,
  type HealthProbe,
} from './http.js';
import type { Logger } from './logger.js';
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

/**
 * The frame every service lives in: a Koa app with JSON errors, /health and the
 * internal-route guard; an HTTP server; its registration in Consul; and a stop that
 * undoes start in reverse — leave routing, drain, close.
 */
export class ServiceHost {
  readonly app: Koa;
  readonly metrics: Metrics;
  readonly server: Server;
  port = 0;
  registration: Registration | undefined;
  private draining = false;
  private readonly startHooks: (() => Promise<void>)[] = [];
  private readonly startedHooks: (() => void)[] = [];
  private readonly drainHooks: (() => Promise<void>)[] = [];
  private readonly closeHooks: (() => Promise<void>)[] = [];

  constructor(private readonly o: HostOptions) {
    this.metrics = new Metrics(o.config.service);
    this.app = createApp(o.log, (ctx) => {
      // Label by route pattern, never by raw path: ids in paths would explode the series.
      const route =
        (ctx as { _matchedRoute?: string })._matchedRoute ??
        (ctx.path === '/health' || ctx.path === '/metrics' ? ctx.path : 'unmatched');
      this.metrics.httpRequests.inc({ route, status: String(ctx.status) });
    });
    const loopDelay = monitorEventLoopDelay({ resolution: 20 });
    loopDelay.enable();
    this.onClose(async () => {
      loopDelay.disable();
    });
    const probes: Record<string, HealthProbe> = {
      ...o.probes,
      // A loop that stalls past a check's timeout fails the check anyway; one that stalls
      // just under it, check after check, is as unfit to serve.
      eventLoop: () => {
        const worstMs = loopDelay.max / 1e6;
        loopDelay.reset();
        if (worstMs > STALL_LIMIT_MS)
          throw new Error(`event loop stalled for ${Math.round(worstMs)} ms`);
      },
    };
    this.app.use(healthRoute(probes, () => this.draining));
    this.app.use(async (ctx, next) => {
      if (ctx.path !== '/metrics' || ctx.method !== 'GET') return next();
      ctx.type = this.metrics.registry.contentType;
      ctx.body = await this.metrics.scrape();
    });
    this.app.use(internalOnly(o.config.secrets.INTERNAL_SECRET));
    this.server = httpServer();
  }

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
    this.server.on('request', this.app.callback());
    this.port = await listen(this.server, config.HOST, config.port);
    this.registration = new Registration({
      consul,
      log,
      id: this.id,
      name: config.service,
      address: config.advertiseAddress,
      port: this.port,
      tags: [`v${VERSION}`],
      meta: () => ({ version: VERSION, ...this.o.meta?.() }),
      checkIntervalMs: config.CONSUL_CHECK_INTERVAL,
      checkTimeoutMs: config.CONSUL_CHECK_TIMEOUT,
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
    for (const hook of [...this.closeHooks].reverse()) await hook();
    this.o.log.info(`${this.o.config.service} stopped`);
  }
}
