/**
 * The one owner of `npm run consume`'s parts. `start()`, in order:
 *
 *   DATA_DIR lock → embedded PostgreSQL (when DATABASE_URL is unset) → migrations → pool →
 *   dead-letter queue, sink chain (the service's: COPY, idempotent, poison isolation, dead letters)
 *   → NATS connection, stream, durable consumer → /metrics on METRICS_PORT
 *
 * `run()` consumes until `close()`, which stops after the batch in hand (bounded by
 * SHUTDOWN_TIMEOUT_MS: past it the write is aborted and its batch left unacknowledged, to be
 * redelivered), then closes everything in the reverse order.
 */
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type pg from 'pg';
import { systemClock } from '../clock.ts';
import { acquireDataDirLock, type DataDirLock } from '../data-dir-lock.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../db/embedded-postgres.ts';
import { migrate } from '../db/migrate.ts';
import { createPool } from '../db/pool.ts';
import { DeadLetterQueue } from '../dlq/dead-letter-queue.ts';
import { createMetricsApp } from '../http/metrics-app.ts';
import { connectJetStream, type JetStreamConnection } from '../jetstream/connection.ts';
import { ensureDurableConsumer } from '../jetstream/durable-consumer.ts';
import { streamSubjects } from '../jetstream/subject.ts';
import { createSinkChain, type SinkChain } from '../sink/sink-chain.ts';
import { createMetrics, type IngestMetrics } from '../telemetry/metrics.ts';
import { JetStreamBatchConsumer } from './batch-consumer.ts';
import type { ConsumerConfig } from './consumer-config.ts';
import { createConsumerMetrics } from './consumer-metrics.ts';
import { reportHeadAnomalies } from '../audit/head-anomalies.ts';

export class ConsumerRuntime {
  readonly config: ConsumerConfig;
  readonly metrics: IngestMetrics;
  readonly pool: pg.Pool;
  readonly databaseUrl: string;
  readonly chain: SinkChain;
  readonly #logger: Logger;
  readonly #consumer: JetStreamBatchConsumer;
  readonly #connection: JetStreamConnection;
  readonly #deadLetterQueue: DeadLetterQueue;
  readonly #metricsApp: FastifyInstance | undefined;
  readonly #embedded: EmbeddedDatabase | undefined;
  readonly #lock: DataDirLock;
  readonly #abort = new AbortController();
  #running: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  private constructor(parts: {
    config: ConsumerConfig;
    logger: Logger;
    metrics: IngestMetrics;
    pool: pg.Pool;
    databaseUrl: string;
    chain: SinkChain;
    consumer: JetStreamBatchConsumer;
    connection: JetStreamConnection;
    deadLetterQueue: DeadLetterQueue;
    metricsApp: FastifyInstance | undefined;
    embedded: EmbeddedDatabase | undefined;
    lock: DataDirLock;
  }) {
    this.config = parts.config;
    this.#logger = parts.logger;
    this.metrics = parts.metrics;
    this.pool = parts.pool;
    this.databaseUrl = parts.databaseUrl;
    this.chain = parts.chain;
    this.#consumer = parts.consumer;
    this.#connection = parts.connection;
    this.#deadLetterQueue = parts.deadLetterQueue;
    this.#metricsApp = parts.metricsApp;
    this.#embedded = parts.embedded;
    this.#lock = parts.lock;
  }

  static async start(config: ConsumerConfig, logger: Logger): Promise<ConsumerRuntime> {
    const service = config.service;
    const undo: (() => Promise<unknown>)[] = [];
    try {
      const lock = await acquireDataDirLock(service.dataDir);
      undo.push(() => lock.release());
      let embedded: EmbeddedDatabase | undefined;
      let databaseUrl = service.databaseUrl;
      if (databaseUrl === undefined) {
        embedded = await startEmbeddedPostgres({ dataDir: path.join(service.dataDir, 'postgres'), logger });
        undo.push(() => embedded!.stop());
        databaseUrl = embedded.url;
      }
      await migrate(databaseUrl, logger);
      const pool = createPool(databaseUrl, service.db, logger);
      undo.push(() => pool.end());
      const metrics = createMetrics();
      metrics.setPoolSource(() => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }));
      const consumerMetrics = createConsumerMetrics(metrics.registry);
      const deadLetterQueue = new DeadLetterQueue({ directory: service.deadLetter.directory, maxFileBytes: service.deadLetter.maxFileBytes, clock: systemClock });
      undo.push(() => deadLetterQueue.close());
      await deadLetterQueue.probe().catch((error: unknown) =>
        logger.error({ err: error, directory: deadLetterQueue.directory }, 'the dead-letter directory is not writable; a batch holding refused rows waits until it is'),
      );
      // AUDIT_CHAIN=on: the consumer's writes are chained like the service's (not signed: checkpoints are the service's).
      const chain = createSinkChain({ pool, config: service, deadLetterQueue, clock: systemClock, metrics, logger, auditChain: service.audit.chain ? { onHeadAnomalies: reportHeadAnomalies(logger, metrics.auditHeadsRecovered) } : undefined });
      const connection = await connectJetStream(service.jetstream, logger, `audit-ingest-consumer-${config.durableName}`);
      undo.push(() => connection.close());
      const durable = await ensureDurableConsumer(
        connection.js,
        connection.jsm,
        {
          stream: service.jetstream.stream,
          name: config.durableName,
          filterSubject: streamSubjects(service.jetstream.subjectPrefix),
          ackWaitMs: config.ackWaitMs,
          maxAckPending: Math.max(1000, 2 * config.batchSize),
        },
        logger,
      );
      const consumer = new JetStreamBatchConsumer({
        consumer: durable,
        sink: chain.sink,
        batchSize: config.batchSize,
        fetchExpiresMs: config.fetchExpiresMs,
        ackWaitMs: config.ackWaitMs,
        metrics: consumerMetrics,
        logger,
        subjectPrefix: service.jetstream.subjectPrefix,
      });
      const metricsApp = service.metricsPort === undefined ? undefined : createMetricsApp(metrics.registry, logger);
      if (metricsApp) {
        await metricsApp.listen({ host: service.metricsHost, port: service.metricsPort ?? 0 });
        undo.push(() => metricsApp.close());
      }
      logger.info(
        { stream: service.jetstream.stream, consumer: config.durableName, batchSize: config.batchSize, database: embedded ? 'embedded' : 'DATABASE_URL' },
        'consuming the JetStream stream into PostgreSQL',
      );
      return new ConsumerRuntime({ config, logger, metrics, pool, databaseUrl, chain, consumer, connection, deadLetterQueue, metricsApp, embedded, lock });
    } catch (error) {
      for (const step of undo.reverse()) await step().catch(() => {});
      throw error;
    }
  }

  /** The /metrics listener's address, when METRICS_PORT is set. */
  get metricsAddress(): string | undefined {
    const address = this.#metricsApp?.server.address();
    return address && typeof address === 'object' ? `http://${address.address}:${address.port}` : undefined;
  }

  /** Consume until close(); resolves when the loop has stopped. */
  run(): Promise<void> {
    this.#running ??= this.#consumer.run(this.#abort.signal);
    return this.#running;
  }

  /** Stop after the batch in hand (abandoning it past `deadlineMs`), then close everything. Idempotent. */
  close(deadlineMs: number = this.config.service.shutdownTimeoutMs): Promise<void> {
    this.#closing ??= this.#close(deadlineMs);
    return this.#closing;
  }

  async #close(deadlineMs: number): Promise<void> {
    this.#consumer.stop();
    const deadline = setTimeout(() => this.#abort.abort(new Error('the consumer did not stop within SHUTDOWN_TIMEOUT_MS')), deadlineMs);
    await this.#running?.catch(() => {});
    clearTimeout(deadline);
    this.chain.breaker.close();
    await this.#connection.close();
    await this.#metricsApp?.close();
    await this.#deadLetterQueue.close();
    await this.pool.end();
    await this.#embedded?.stop();
    await this.#lock.release();
    this.#logger.info('consumer stopped');
  }
}
