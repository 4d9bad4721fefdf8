import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type pg from 'pg';
import { buildApp } from './app.ts';
import { ApiKeyStore } from './auth/api-key-store.ts';
import { Authenticator } from './auth/authenticator.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import { isDatabaseReachable } from './db/pool.ts';
import { DeadLetterQueue } from './dlq/dead-letter-queue.ts';
import type { Admission } from './http/admission.ts';
import { IngestPipeline } from './ingest/pipeline.ts';
import { OverridePoller } from './limits/override-poller.ts';
import { TenantLimitStore } from './limits/tenant-limit-store.ts';
import { TenantRateLimiter } from './limits/tenant-rate-limiter.ts';
import { FailureObservingSink } from './sink/failure-observing-sink.ts';
import { createSinkChain, type SinkChain, type SinkTarget } from './sink/sink-chain.ts';
import type { Sink } from './sink/sink.ts';
import type { AuditChainOptions } from './sink/postgres-copy-sink.ts';
import type { IngestMetrics } from './telemetry/metrics.ts';
import type { Durability } from './wal/durability.ts';

export interface IngestService {
  readonly app: FastifyInstance;
  readonly admission: Admission;
  readonly pipeline: IngestPipeline;
  readonly chain: SinkChain;
  readonly deadLetterQueue: DeadLetterQueue;
  /** Reads per-tenant limit overrides (not started here); undefined when rate limits are off. */
  readonly limitOverrides: OverridePoller | undefined;
}

/**
 * Wire the parts into one service: dead-letter queue, sink chain, pipeline, HTTP app. No I/O:
 * src/runtime.ts owns starting and stopping them (and is what server.ts, the tests and the bench
 * build).
 */
export function createIngestService(options: {
  config: Config;
  pool: pg.Pool;
  clock: Clock;
  logger: Logger;
  metrics: IngestMetrics;
  /** Tests wrap the COPY sink to inject faults. */
  wrapBaseSink?: (sink: Sink) => Sink;
  /** AUDIT_CHAIN=on: what the COPY sink reports of the chain (undefined: the chain is off). */
  auditChain?: AuditChainOptions | undefined;
  /** The bench's baseline replaces the whole write path (see createSinkChain). */
  replaceWritePath?: (base: Sink) => Sink;
  /** What acknowledgement waits for: the opened write-ahead log (DURABILITY=wal) or memory. */
  durability: Durability;
  /**
   * SINK=jetstream: batches go to this target instead of PostgreSQL, and readiness asks whether
   * it is reachable instead of the database (which then serves API keys only; known keys are
   * cached, so the edge keeps taking events while the database is away).
   */
  target?: SinkTarget & { readonly reachable: () => Promise<boolean> };
}): IngestService {
  const { config, pool, clock, logger, metrics, durability } = options;
  // ACK_MODE=committed logs nothing new whatever DURABILITY says (open-durability.ts).
  const expectedMode = config.ackMode === 'committed' ? 'memory' : config.durability.mode;
  if (durability.mode !== expectedMode) {
    throw new Error(`DURABILITY=${config.durability.mode} (ACK_MODE=${config.ackMode}) needs ${expectedMode} durability, but the service was given ${durability.mode}`);
  }
  metrics.setPoolSource(() => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }));
  const deadLetterQueue = new DeadLetterQueue({
    directory: config.deadLetter.directory,
    maxFileBytes: config.deadLetter.maxFileBytes,
    clock,
  });
  // With BATCH_WINDOW=adaptive every failed write attempt reaches the pipeline (its window backs off on congestion).
  // The pipeline is built after the chain; no write can fail before it exists.
  const wrapBaseSink = options.wrapBaseSink;
  const chain = createSinkChain({
    pool,
    config,
    deadLetterQueue,
    clock,
    metrics,
    logger,
    ...(options.target ? { target: options.target } : {}),
    auditChain: options.auditChain,
    wrapBase: (copy) => {
      const base = wrapBaseSink ? wrapBaseSink(copy) : copy;
      // Only an adaptive window listens to every failed attempt; a static one pays nothing for it.
      return config.batch.window === 'adaptive' ? new FailureObservingSink(base, (error) => pipeline.noteWriteFailure(error)) : base;
    },
    ...(options.replaceWritePath ? { replaceWritePath: options.replaceWritePath } : {}),
  });
  const pipeline = new IngestPipeline({
    batch: config.batch,
    queue: config.queue,
    sink: chain.sink,
    onSettled: (batch) => durability.settle(batch),
    clock,
    metrics,
    logger,
  });
  const authenticator = config.auth.enabled
    ? new Authenticator({
        keys: new ApiKeyStore(pool),
        clock,
        cacheTtlMs: config.auth.cacheTtlMs,
        cacheMaxKeys: 100_000,
        maxFailuresPerWindow: config.auth.maxFailuresPerMinute,
        failureWindowMs: 60_000,
      })
    : undefined;
  const limits = config.tenantLimits;
  const rateLimiter = limits ? new TenantRateLimiter({ clock, defaults: { events: limits.events, bytes: limits.bytes } }) : undefined;
  const limitStore = new TenantLimitStore(pool);
  const limitOverrides = rateLimiter
    ? new OverridePoller({ clock, intervalMs: limits!.pollMs, logger, read: () => limitStore.list(), apply: (rows) => rateLimiter.setOverrides(rows) })
    : undefined;
  const { app, admission } = buildApp({
    config,
    durability,
    authenticator,
    rateLimiter,
    serveMetricsOnMainListener: config.metricsOnPublicListener,
    pipeline,
    clock,
    logger,
    metrics,
    notReadyReason: async () => {
      if (pipeline.draining) return 'draining';
      const target = options.target;
      if (chain.breaker.state === 'open') return `${target?.name ?? 'database'} circuit breaker open`;
      if (!deadLetterQueue.healthy) return 'dead-letter queue unwritable';
      if (durability.refusing) return `write-ahead log refusing events: ${durability.refusing}`;
      if (target ? !(await target.reachable()) : !(await isDatabaseReachable(pool, 1000))) return `${target?.name ?? 'database'} unreachable`;
      return undefined;
    },
  });
  return { app, admission, pipeline, chain, deadLetterQueue, limitOverrides };
}
