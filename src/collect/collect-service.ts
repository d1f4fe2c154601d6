import { monotonicFactory } from 'ulid';
import type { Config } from '../core/config.js';
import type { ConsulClient } from '../core/consul.js';
import { ServiceView } from '../core/discovery.js';
import { HttpError, readJsonText, requireBearer } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { Peers } from '../core/peers.js';
import { acksHop, deliveredHop, unackedFirstPagesHop, unackedHop } from '../protocol/hops.js';
import type { IngestResponse, MessageView } from '../protocol/public-api.js';
import { ServiceHost } from '../core/service-host.js';
import type { MessageStore, StoredMessage } from '../store/message-store.js';
import { LeaderLock } from '../core/leader.js';
import {
  DELIVERED_MARK_DELAY_MS,
  HANDOFF_BACKLOG_BATCHES,
  HANDOFF_BODY_SHARE,
  INTERNAL_BODY_FACTOR,
  sweepBatch,
} from '../core/tuning.js';
import { DeliveredMarks } from './delivered-marks.js';
import { firstPages } from './first-pages.js';
import { envelopeOf, Handoff } from './handoff.js';
import { RedeliverySweeper } from './redelivery-sweeper.js';
import { ingest, type IngestOptions } from './ingest.js';
import { parseIngestBody } from './ingest-schema.js';
import type { MessageLimits } from './message-limits.js';

/**
 * collect: the ingestion API. A message is stored first and answered 202 only once the
 * store holds it; then it is handed to dispatch. Push nodes call back here for replays
 * and acks, since collect owns the store.
 */
export function createCollectService(
  config: Config,
  log: Logger,
  consul: ConsulClient,
  store: MessageStore,
): ServiceHost {
  const host = new ServiceHost({ config, log, consul, probes: { store: () => store.ping() } });
  const { metrics } = host;
  const dispatchView = new ServiceView({
    consul,
    log,
    service: 'dispatch',
    onError: () => metrics.dependencyFailed('consul'),
  });
  metrics.onScrape(async () => {
    const counts = await store.countByStatus();
    for (const [status, n] of Object.entries(counts)) metrics.storedByStatus.set({ status }, n);
  });
  const dispatch = new Peers({
    view: dispatchView,
    secret: config.secrets.INTERNAL_SECRET,
    timeoutMs: config.PEER_TIMEOUT,
  });
  const retry = { baseMs: config.ACK_TIMEOUT, maxMs: config.ACK_RETRY_MAX };
  const deliveredMarks = new DeliveredMarks({
    store,
    log,
    ackRetry: retry,
    delayMs: Math.min(DELIVERED_MARK_DELAY_MS, config.HANDOFF_GRACE / 4),
  });
  const handoffBatchBytes = config.MAX_BODY_BYTES * INTERNAL_BODY_FACTOR * HANDOFF_BODY_SHARE;
  const handoff = new Handoff({
    dispatch,
    store,
    log,
    onDelivered: (ids, at) => deliveredMarks.add(ids, at),
    unroutedRecheckMs: config.UNROUTED_RECHECK,
    maxBatchBytes: handoffBatchBytes,
    maxBacklogBytes: handoffBatchBytes * HANDOFF_BACKLOG_BATCHES,
    onDeferred: (n) => metrics.stage('deferred').inc(n),
  });
  const sweeper = new RedeliverySweeper({
    store,
    handoff,
    log,
    intervalMs: config.SWEEP_INTERVAL,
    batchSize: sweepBatch(config.MAX_PAYLOAD_BYTES),
    backlogBytes: handoffBatchBytes,
    maxAttempts: config.MAX_ATTEMPTS,
    onFailed: (n) => metrics.stage('failed').inc(n),
    onRedelivered: (n) => metrics.stage('redelivered').inc(n),
  });
  const limits: MessageLimits = {
    maxPayloadBytes: config.MAX_PAYLOAD_BYTES,
    maxPayloadDepth: config.MAX_PAYLOAD_DEPTH,
    maxRequestPayloadBytes: config.MAX_REQUEST_PAYLOAD_BYTES,
  };

  const ingestOptions: IngestOptions = {
    store,
    newId: monotonicFactory(),
    ttlMs: config.MESSAGE_TTL_SECONDS * 1000,
    handoffGraceMs: config.HANDOFF_GRACE,
    onStoreFailed: (err, messages) => {
      metrics.dependencyFailed(store.kind);
      log.error({ err: err.message, messages }, 'store refused messages');
    },
  };
  const router = host.routes;

  // ---- public API ------------------------------------------------------------

  router.post('/v1/messages', async (ctx) => {
    requireBearer(ctx, config.secrets.INGEST_API_KEY, 'INGEST_API_KEY');
    const items = parseIngestBody(
      await readJsonText(ctx, config.MAX_BODY_BYTES, host.bodies),
      limits,
    );
    const result = await ingest(items, new Date(), ingestOptions);
    metrics.stage('ingested').inc(result.inserted.length);
    if (log.isLevelEnabled('debug'))
      for (const m of result.inserted) log.debug({ msgId: m.id, to: m.to }, 'accepted');
    ctx.status = 202;
    ctx.body = { ids: result.ids } satisfies IngestResponse;
    handoff.enqueue(result.inserted, 'ingest');
  });

  router.get('/v1/messages/:id', async (ctx) => {
    requireBearer(ctx, config.secrets.INGEST_API_KEY, 'INGEST_API_KEY');
    const m = await store.get(ctx.params.id ?? '');
    if (!m) throw new HttpError(404, 'not_found', `no message ${ctx.params.id}`);
    ctx.body = viewOf(m);
  });

  // ---- for push nodes --------------------------------------------------------

  host.handle(unackedHop, async ({ userId, limit, after }) => {
    const cursor = after && { id: after.id, createdAt: new Date(after.createdAt) };
    const messages = await store.listUnacked(userId, limit, cursor);
    return { messages: messages.map(envelopeOf) };
  });

  const firstPagesBudget = config.MAX_BODY_BYTES * INTERNAL_BODY_FACTOR * HANDOFF_BODY_SHARE;
  host.handle(unackedFirstPagesHop, ({ userIds, limit }) =>
    firstPages(store, userIds, limit, firstPagesBudget),
  );

  host.handle(deliveredHop, ({ ids }) => {
    deliveredMarks.add(ids, Date.now());
    return {};
  });

  host.handle(acksHop, async ({ acks }) => {
    for (const { ids } of acks) deliveredMarks.acked(ids);
    const acked = await store.markAcked(acks, new Date());
    metrics.stage('acked').inc(acked);
    return { acked };
  });
  host.onStart(() => dispatchView.start());
  host.onStarted(() => {
    sweeper.start(new LeaderLock({ consul, log, name: 'redelivery-sweep', serviceId: host.id }));
  });
  host.onDrain(async () => {
    await sweeper.stop();
    await handoff.drain();
    await deliveredMarks.flush();
  });
  host.onClose(async () => {
    deliveredMarks.stop();
    dispatchView.stop();
    dispatch.close();
    await store.close();
  });
  return host;
}

function viewOf(m: StoredMessage): MessageView {
  return {
    id: m.id,
    to: m.to,
    status: m.status,
    payload: m.payload,
    createdAt: m.createdAt.toISOString(),
    ...(m.deliveredAt ? { deliveredAt: m.deliveredAt.toISOString() } : {}),
    ...(m.ackedAt ? { ackedAt: m.ackedAt.toISOString() } : {}),
    attempts: m.attempts,
    ...(m.failedAt ? { failedAt: m.failedAt.toISOString(), failReason: m.failReason } : {}),
  };
}
