/**
 * The baseline for poison-lag.ts: the service's own parts (Batcher, PostgresCopySink, prepareEvent,
 * createPool, Admission, the metrics) wired without poison isolation. A batch that fails is
 * retried whole, after a fixed delay, until it succeeds — which a batch holding an event the
 * database refuses for good never does. No write-ahead log: 202 once queued (DURABILITY=memory).
 *
 * Configured like the service (src/config.ts: PORT, HOST, DATABASE_URL, BATCH_*, QUEUE_CAPACITY,
 * SHED_*_WATER, DB_*) plus RETRY_FIXED_DELAY_MS (default 100). Routes: POST /event, GET /metrics,
 * GET /healthz. SIGTERM: drain for up to 2 s, then exit (3 when events were left unstored).
 */
import { setTimeout as delay } from 'node:timers/promises';
import Fastify from 'fastify';
import { pino } from 'pino';
import { Batcher } from '../src/batcher/batcher.ts';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { createPool } from '../src/db/pool.ts';
import { IngestError } from '../src/errors.ts';
import { Admission } from '../src/http/admission.ts';
import { registerJsonBodyParser } from '../src/http/json-body.ts';
import { prepareEvent } from '../src/http/prepare-event.ts';
import { handleError, sendProblem } from '../src/http/problem.ts';
import { PostgresCopySink } from '../src/sink/postgres-copy-sink.ts';
import type { QueuedEvent } from '../src/sink/sink.ts';
import { createMetrics } from '../src/telemetry/metrics.ts';

const config = loadConfig(process.env);
if (config.databaseUrl === undefined) {
  process.stderr.write('DATABASE_URL is required\n');
  process.exit(2);
}
const retryDelayMs = Number(process.env.RETRY_FIXED_DELAY_MS ?? 100);
const logger = pino({ level: config.logLevel });
const pool = createPool(config.databaseUrl, config.db, logger);
const metrics = createMetrics();
const sink = new PostgresCopySink(pool, { copyTimeoutMs: config.db.copyTimeoutMs });

const batcher = new Batcher<QueuedEvent>({
  maxBatchSize: config.batch.maxSize,
  maxBatchBytes: config.batch.maxBytes,
  maxWaitMs: config.batch.maxWaitMs,
  flushConcurrency: config.batch.flushConcurrency,
  capacity: config.queue.capacity,
  capacityBytes: config.queue.maxBytes,
  clock: systemClock,
  sizeOf: (event) => event.bytes,
  // The whole batch, again and again, until it commits (or the shutdown deadline aborts it).
  flush: async (batch, { signal }) => {
    for (;;) {
      try {
        const { inserted } = await sink.write(batch, { signal });
        metrics.eventsStored.inc(inserted);
        if (batch.length > inserted) metrics.eventsDuplicate.inc(batch.length - inserted);
        return;
      } catch (error) {
        if (signal.aborted) throw error;
        metrics.retries.inc();
        await delay(retryDelayMs, undefined, { signal });
      }
    }
  },
  onFlushSettled: (report) => {
    metrics.flushes.inc({ reason: report.reason });
    metrics.batchSize.observe(report.size);
    if (report.error !== undefined) {
      metrics.eventsFailed.inc(report.size);
      return;
    }
    const nowMs = systemClock.now();
    for (const enqueuedAtMs of report.enqueuedAtMs) metrics.batchLatency.observe((nowMs - enqueuedAtMs) / 1000);
  },
});
metrics.queueCapacity.set(config.queue.capacity);
metrics.setQueueDepthSource(() => batcher.depth);

// The service's load shedding, on this batcher: 429 above the high-water mark until below the low one.
const admission = new Admission(
  {
    get depth() {
      return batcher.depth;
    },
    get capacity() {
      return batcher.capacity;
    },
    get drainRatePerSecond() {
      return batcher.drainRatePerSecond;
    },
    draining: false,
    hasRoomFor: (count, bytes) => batcher.hasRoomFor(count, bytes),
  },
  { highWater: config.queue.shedHighWater, lowWater: config.queue.shedLowWater },
);

const SHED_REASONS: Partial<Record<string, string>> = { INGEST_ERR_OVERLOADED: 'overloaded', INGEST_ERR_QUEUE_FULL: 'queue_full' };

const app = Fastify({ logger: false, bodyLimit: config.bodyLimitBytes });
registerJsonBodyParser(app);
app.setErrorHandler(handleError);
app.decorateReply('problemCode', undefined);
app.addHook('onResponse', async (request, reply) => {
  metrics.httpResponses.inc({ route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode });
  const reason = reply.problemCode === undefined ? undefined : SHED_REASONS[reply.problemCode];
  if (reason) metrics.shed.inc({ reason });
});
app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
app.get('/metrics', async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
app.post('/event', (request, reply) => {
  const decision = admission.decide();
  if (!decision.admit) return sendProblem(reply, new IngestError(decision.code, undefined, { retryAfterSeconds: decision.retryAfterSeconds }));
  const prepared = prepareEvent(request.body, new Date(systemClock.now()).toISOString());
  if (!prepared.ok) return sendProblem(reply, new IngestError('INGEST_ERR_VALIDATION', undefined, { issues: prepared.issues }));
  const result = batcher.enqueue(prepared.event);
  if (!result.ok) return sendProblem(reply, new IngestError('INGEST_ERR_QUEUE_FULL', undefined, { retryAfterSeconds: admission.retryAfterSeconds() }));
  metrics.eventsAccepted.inc();
  return reply.code(202).send({ id: prepared.event.id });
});

process.once('SIGTERM', () => {
  void (async () => {
    let code = 0;
    await app.close();
    try {
      await batcher.shutdown(2000);
    } catch {
      code = 3; // the poisoned batches never commit: their events are left behind
    }
    await pool.end().catch(() => {});
    process.exit(code);
  })();
});

await app.listen({ host: config.host, port: config.port });
