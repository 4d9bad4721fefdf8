/**
 * The one owner of everything with a start and a stop. `start()` brings the service up in this
 * order, and `close(deadline)` takes it down in the reverse one:
 *
 *   DATA_DIR lock → tracing → embedded PostgreSQL (when DATABASE_URL is unset) → migrations → pool
 *   → partition maintenance (one run, then every PARTITION_MAINTENANCE_INTERVAL_MS)
 *   → NATS connection and stream (SINK=jetstream), or the HTTP client of the receiver (SINK=http)
 *   → durability (recover and open the write-ahead log) → dead-letter queue, sink chain, pipeline,
 *   HTTP app (createIngestService) → DLQ probe → spill re-ingest → WAL replay → ready to listen
 *
 *   close: intake answers 503 (draining) → listeners stop, in-flight requests finish → the
 *   pipeline drains within what is left of the deadline → what could not be stored stays in the
 *   log (WAL mode) or goes to a spill file (memory mode) → partition maintenance, log, DLQ, pool, metrics listener,
 *   embedded database, tracing close; the DATA_DIR lock is released last.
 *
 * server.ts, the tests and the bench all build this same object, so the tests exercise the
 * default configuration (WAL mode) rather than a copy of the wiring. It never exits the process:
 * it reports a failed log through `onFatal` and a failed start by throwing a RuntimeStartError.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type pg from 'pg';
import { systemClock, type Clock } from './clock.ts';
import type { Config } from './config.ts';
import { acquireDataDirLock, DataDirLockedError, type DataDirLock } from './data-dir-lock.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded-postgres.ts';
import { migrate } from './db/migrate.ts';
import { PartitionMaintenance } from './db/partition-maintenance.ts';
import { createPool } from './db/pool.ts';
import { packageVersion } from './package-version.ts';
import type { DeadLetterQueue } from './dlq/dead-letter-queue.ts';
import { IngestInternalError } from './internal-errors.ts';
import { connectJetStream, type JetStreamConnection } from './jetstream/connection.ts';
import { JetStreamSink } from './sink/jetstream-sink.ts';
import { ForwardClient } from './forward/forward-client.ts';
import { HttpForwardSink } from './sink/http-forward-sink.ts';
import type { Admission } from './http/admission.ts';
import { createMetricsApp } from './http/metrics-app.ts';
import type { IngestPipeline } from './ingest/pipeline.ts';
import { createIngestService } from './ingest-service.ts';
import type { OverridePoller } from './limits/override-poller.ts';
import type { SinkChain } from './sink/sink-chain.ts';
import type { QueuedEvent } from './event/queued-event.ts';
import type { Sink } from './sink/sink.ts';
import type { DeadLetterWriter } from './sink/poison-splitting-sink.ts';
import { recoverSpill } from './spill/recover-spill.ts';
import { writeSpillFile } from './spill/spill-file.ts';
import { createMetrics, type IngestMetrics } from './telemetry/metrics.ts';
import { startTracing } from './telemetry/tracing.ts';
import type { Durability } from './wal/durability.ts';
import type { WalFailedError } from './wal/errors.ts';
import { openDurability, type OpenedDurability } from './wal/open-durability.ts';
import { replayRecovered } from './wal/replay.ts';
import { raceDeadline } from './deadline.ts';
import type { CheckpointWriter } from './audit/checkpoint-writer.ts';
import { openCheckpoints } from './audit/open-checkpoints.ts';
import { reportHeadAnomalies } from './audit/head-anomalies.ts';

export interface RuntimeOptions {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** OTEL_* variables; tracing starts only when they ask for it. Omitted: no tracing (tests). */
  readonly tracingEnvironment?: Record<string, string | undefined>;
  /** Tests and the bench wrap the COPY sink to inject faults or replace it. */
  readonly wrapBaseSink?: (sink: Sink) => Sink;
  /** The bench's whole-batch-retry baseline replaces the decorated write path (createSinkChain). */
  readonly replaceWritePath?: (base: Sink) => Sink;
  /** The write-ahead log failed: nothing more may be acknowledged; the owner of the process exits. */
  readonly onFatal?: (error: WalFailedError) => void;
}

/** What close() left behind. */
export interface CloseReport {
  /** Events accepted but not stored by the deadline. */
  readonly unstored: number;
  /** Where they are: still in the write-ahead log (WAL mode), or in this spill file (memory mode). */
  readonly keptIn: 'nothing' | 'wal' | 'spill';
  readonly spillFile?: string;
  readonly durationMs: number;
}

/** Start-up could not complete; `code` says which step (server.ts maps it to an exit code). */
export class RuntimeStartError extends IngestInternalError {
  constructor(
    code: 'RUNTIME_ERR_WAL_UNAVAILABLE' | 'RUNTIME_ERR_DATA_DIR_LOCKED' | 'RUNTIME_ERR_DATA_DIR_UNAVAILABLE',
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(code, message, options);
  }
}

export class IngestRuntime {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: IngestMetrics;
  readonly app: FastifyInstance;
  /** The /metrics listener of METRICS_PORT, when set. */
  readonly metricsApp: FastifyInstance | undefined;
  readonly pipeline: IngestPipeline;
  readonly admission: Admission;
  readonly chain: SinkChain;
  readonly deadLetterQueue: DeadLetterQueue;
  /** Per-tenant limit overrides, read every TENANT_LIMITS_POLL_MS; undefined when limits are off. */
  readonly limitOverrides: OverridePoller | undefined;
  readonly durability: Durability;
  readonly pool: pg.Pool;
  readonly partitions: PartitionMaintenance;
  /** The database URL in use (the embedded server's when DATABASE_URL is unset). */
  readonly databaseUrl: string;
  readonly #embedded: EmbeddedDatabase | undefined;
  /** SINK=jetstream: the NATS connection batches are published on. */
  readonly jetstream: JetStreamConnection | undefined;
  /** SINK=http: the client of the receiving instance batches are posted to. */
  readonly forward: ForwardClient | undefined;
  readonly #opened: OpenedDurability;
  /** AUDIT_CHECKPOINT_FILE and/or _WEBHOOK_URL: signs the chain's heads; its last checkpoint is exported at close. */
  readonly checkpoints: CheckpointWriter | undefined;
  readonly #stopTracing: () => Promise<void>;
  readonly #lock: DataDirLock;
  #closing: Promise<CloseReport> | undefined;

  private constructor(parts: {
    options: RuntimeOptions;
    clock: Clock;
    metrics: IngestMetrics;
    embedded: EmbeddedDatabase | undefined;
    databaseUrl: string;
    pool: pg.Pool;
    partitions: PartitionMaintenance;
    jetstream: JetStreamConnection | undefined;
    forward: ForwardClient | undefined;
    opened: OpenedDurability;
    checkpoints: CheckpointWriter | undefined;
    stopTracing: () => Promise<void>;
    lock: DataDirLock;
  }) {
    const { options } = parts;
    this.config = options.config;
    this.logger = options.logger;
    this.clock = parts.clock;
    this.metrics = parts.metrics;
    this.#embedded = parts.embedded;
    this.databaseUrl = parts.databaseUrl;
    this.pool = parts.pool;
    this.partitions = parts.partitions;
    this.jetstream = parts.jetstream;
    this.forward = parts.forward;
    this.#opened = parts.opened;
    this.checkpoints = parts.checkpoints;
    this.durability = parts.opened.durability;
    this.#stopTracing = parts.stopTracing;
    this.#lock = parts.lock;
    const service = createIngestService({
      config: this.config,
      pool: this.pool,
      clock: this.clock,
      logger: this.logger,
      metrics: this.metrics,
      durability: this.durability,
      auditChain:
        this.config.audit.chain && this.config.sink === 'postgres'
          ? {
              onCommitted: (heads) => {
                let events = 0;
                for (const head of heads) events += head.events;
                this.metrics.auditChainedEvents.inc(events);
                if (parts.checkpoints === undefined) return;
                parts.checkpoints.record(heads);
                this.metrics.auditUnsignedEvents.set(parts.checkpoints.unsignedEvents);
              },
              onHeadAnomalies: reportHeadAnomalies(this.logger, this.metrics.auditHeadsRecovered),
            }
          : undefined,
      ...(parts.jetstream ? { target: jetStreamTarget(parts.jetstream, this.config.jetstream) } : {}),
      ...(parts.forward ? { target: forwardTarget(parts.forward, this.config.forward) } : {}),
      ...(options.wrapBaseSink ? { wrapBaseSink: options.wrapBaseSink } : {}),
      ...(options.replaceWritePath ? { replaceWritePath: options.replaceWritePath } : {}),
    });
    this.app = service.app;
    this.admission = service.admission;
    this.pipeline = service.pipeline;
    this.metrics.setOldestUnsettledSource(() => this.pipeline.oldestEnqueuedAtMs, this.clock);
    this.chain = service.chain;
    this.deadLetterQueue = service.deadLetterQueue;
    this.limitOverrides = service.limitOverrides;
    // /metrics names tenants: it has a listener of its own (METRICS_PORT on METRICS_HOST, 127.0.0.1
    // by default); the public listener serves it only with METRICS_ON_PUBLIC_LISTENER=true.
    this.metricsApp = this.config.metricsPort === undefined ? undefined : createMetricsApp(this.metrics.registry, this.logger);
  }

  /**
   * Bring everything up, recover what an earlier run left (spill files, WAL records) into the
   * queue, and resolve once the service may listen. A step that fails undoes the ones before it.
   */
  static async start(options: RuntimeOptions): Promise<IngestRuntime> {
    const { config, logger } = options;
    const clock = options.clock ?? systemClock;
    const undo: (() => Promise<unknown>)[] = [];
    try {
      // One service per DATA_DIR (its log, DLQ, spill files and embedded cluster): a second exits here.
      const lock = await acquireDataDirLock(config.dataDir).catch((error: unknown) => {
        const locked = error instanceof DataDirLockedError;
        throw new RuntimeStartError(locked ? 'RUNTIME_ERR_DATA_DIR_LOCKED' : 'RUNTIME_ERR_DATA_DIR_UNAVAILABLE', (error as Error).message, { cause: error });
      });
      undo.push(() => lock.release());
      const stopTracing = options.tracingEnvironment ? await startTracing(options.tracingEnvironment, logger) : async () => {};
      undo.push(stopTracing);
      let embedded: EmbeddedDatabase | undefined;
      let databaseUrl = config.databaseUrl;
      if (databaseUrl === undefined) {
        embedded = await startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), logger });
        undo.push(() => embedded!.stop());
        databaseUrl = embedded.url;
      }
      await migrate(databaseUrl, logger);
      const pool = createPool(databaseUrl, config.db, logger);
      undo.push(() => pool.end());
      // Today's and the next days' partitions before the first write; a failed run is not fatal (events
      // land in the default partition meanwhile, and the next run moves them), so it is logged and retried.
      const partitions = new PartitionMaintenance(pool, config.partitions, clock, logger);
      await partitions.runOnce().catch((error: unknown) =>
        logger.error({ err: error, code: 'PARTITION_ERR_MAINTENANCE' }, 'partition maintenance failed; trying again at the next run'),
      );
      partitions.start();
      undo.push(() => partitions.stop());
      // SINK=jetstream: PostgreSQL still holds the API keys (and is migrated); events go to the stream.
      let jetstream: JetStreamConnection | undefined;
      if (config.sink === 'jetstream') {
        jetstream = await connectJetStream(config.jetstream, logger);
        undo.push(() => jetstream!.close());
        logger.info({ url: config.jetstream.url, stream: config.jetstream.stream }, 'SINK=jetstream: batches are published to the JetStream stream');
      }
      // SINK=http: PostgreSQL holds the API keys; events go to the receiving instance at FORWARD_URL.
      let forward: ForwardClient | undefined;
      if (config.sink === 'http') {
        const { url, apiKey, timeoutMs, gzip, maxRetryAfterMs } = config.forward;
        forward = new ForwardClient({ url: url!, apiKey, timeoutMs, gzip, maxRetryAfterMs, connections: config.batch.flushConcurrency });
        undo.push(() => forward!.close());
        logger.info({ url, gzip, flushConcurrency: config.batch.flushConcurrency }, 'SINK=http: batches are forwarded to another instance (POST /events)');
      }
      const metrics = createMetrics();
      metrics.buildInfo.set({ version: packageVersion(), node: process.version }, 1);
      if (!config.auth.enabled) {
        logger.warn(
          'AUTH=off: POST /event and /events accept events for any tenant from anyone who can reach this port. Use it for local development only; in production leave AUTH on and create keys with `npm run keys -- create --tenant <tenant>`',
        );
      }
      const onFatal = options.onFatal ?? ((error: WalFailedError) => logger.fatal({ err: error }, 'the write-ahead log failed; nothing more is acknowledged'));
      const opened = await openDurability(config, metrics, logger, onFatal).catch((error: unknown) => {
        throw new RuntimeStartError('RUNTIME_ERR_WAL_UNAVAILABLE', `cannot open the write-ahead log directory ${config.durability.directory}`, { cause: error });
      });
      undo.push(() => opened.close());
      const checkpoints = await openCheckpoints(config, clock, logger, metrics);
      if (checkpoints) undo.push(() => checkpoints.close());
      const runtime = new IngestRuntime({ options, clock, metrics, embedded, databaseUrl, pool, partitions, jetstream, forward, opened, checkpoints, stopTracing, lock });
      undo.push(() => runtime.deadLetterQueue.close());
      if (runtime.limitOverrides) {
        await runtime.limitOverrides.start();
        undo.push(() => Promise.resolve(runtime.limitOverrides!.stop()));
      }
      await runtime.#recover();
      return runtime;
    } catch (error) {
      for (const step of undo.reverse()) await step().catch(() => {});
      throw error;
    }
  }

  /** Open the public listener (and METRICS_PORT's). */
  async listen(): Promise<void> {
    await this.app.listen({ host: this.config.host, port: this.config.port });
    if (this.metricsApp) await this.metricsApp.listen({ host: this.config.metricsHost, port: this.config.metricsPort ?? 0 });
  }

  /**
   * The close sequence, bounded by `deadlineMs` for the listener and the drain together.
   * Idempotent: a second call returns the first one's report.
   */
  close(deadlineMs: number = this.config.shutdownTimeoutMs): Promise<CloseReport> {
    this.#closing ??= this.#close(deadlineMs);
    return this.#closing;
  }

  async #recover(): Promise<void> {
    // Find out now, not at the first dead letter, whether DATA_DIR/dlq is writable (/readyz reports it).
    await this.deadLetterQueue.probe().catch((error: unknown) =>
      this.logger.error(
        { err: error, directory: this.deadLetterQueue.directory },
        'the dead-letter directory is not writable; /readyz fails until it is. Fix its permissions or free disk space',
      ),
    );
    await recoverSpill(this.config.dataDir, this.pipeline, this.logger);
    await replayRecovered(this.#opened.recovered, this.pipeline, this.metrics, this.logger);
  }

  async #close(deadlineMs: number): Promise<CloseReport> {
    const startedAtMs = Date.now();
    const logger = this.logger;
    logger.info({ unsettled: this.pipeline.depth }, 'shutting down: intake closed, draining the queue');
    // 1. readiness turns 503 and new events get 503; 2. stop listening, let in-flight requests finish.
    this.pipeline.beginDrain();
    await raceDeadline(this.app.close(), deadlineMs);
    // 3. drain the pipeline within what is left of the deadline.
    const remainingMs = Math.max(deadlineMs - (Date.now() - startedAtMs), 0);
    const unstored = await this.pipeline.shutdown(remainingMs);
    const report = await this.#keepUnstored(unstored);
    // The last signed checkpoint: every head this process appended is pinned before it goes.
    await this.checkpoints?.close();
    this.chain.breaker.close(); // no more database probes
    this.limitOverrides?.stop();
    // 4. close the log, the dead-letter file, the NATS connection and the pool, then the embedded database.
    await this.partitions.stop();
    await this.#opened.close();
    await this.jetstream?.close();
    await this.forward?.close();
    await this.deadLetterQueue.close();
    await this.pool.end();
    await this.metricsApp?.close();
    await this.#embedded?.stop();
    await this.#stopTracing();
    await this.#lock.release();
    const durationMs = Date.now() - startedAtMs;
    logger.info({ durationMs, unstored: unstored.length, keptIn: report.keptIn }, 'shutdown complete');
    return { ...report, durationMs };
  }

  async #keepUnstored(unstored: readonly QueuedEvent[]): Promise<Omit<CloseReport, 'durationMs'>> {
    if (unstored.length === 0) return { unstored: 0, keptIn: 'nothing' };
    if (this.durability.mode === 'wal') {
      this.pipeline.recordSpilled(unstored.length, 'left_in_wal');
      this.logger.error(
        { events: unstored.length },
        'shutdown deadline passed with events unstored; they stay in the write-ahead log and are replayed at the next start',
      );
      return { unstored: unstored.length, keptIn: 'wal' };
    }
    const spillFile = await writeSpillFile(this.config.dataDir, unstored, Date.now());
    this.pipeline.recordSpilled(unstored.length);
    this.logger.error({ file: spillFile, events: unstored.length }, 'unstored events written to the spill file; they are re-ingested at the next start');
    return { unstored: unstored.length, keptIn: 'spill', spillFile };
  }
}

/** The sink chain's target for SINK=jetstream: publish to the stream, probe it, ping it for readiness. */
function jetStreamTarget(connection: JetStreamConnection, config: Config['jetstream']) {
  return {
    name: 'JetStream',
    sink: new JetStreamSink(connection.js, { publishTimeoutMs: config.publishTimeoutMs, subjectPrefix: config.subjectPrefix }),
    probe: (timeoutMs: number) => connection.probe(timeoutMs),
    reachable: () => connection.reachable(1000),
  };
}

/** The sink chain's target for SINK=http: post to the receiver, probe its /readyz, ask its /healthz for readiness. */
function forwardTarget(client: ForwardClient, config: Config['forward']) {
  return {
    name: 'forward receiver',
    sink: (deadLetter: DeadLetterWriter) => new HttpForwardSink(client, { maxEvents: config.maxEvents, maxBytes: config.maxBytes, deadLetter }),
    probe: (timeoutMs: number) => client.get('/readyz', timeoutMs),
    reachable: () =>
      client.get('/healthz', 1000).then(
        () => true,
        () => false,
      ),
  };
}

