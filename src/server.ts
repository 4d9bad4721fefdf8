/**
 * The process edge: read the environment once, start the database (embedded unless DATABASE_URL
 * is set), migrate, build the app, listen, and own the close sequence. The only file that exits.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { systemClock } from './clock.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded-postgres.ts';
import { migrate } from './db/migrate.ts';
import { createPool } from './db/pool.ts';
import { createIngestService } from './ingest-service.ts';
import { createMetricsApp } from './http/metrics-app.ts';
import { recoverSpill } from './spill/recover-spill.ts';
import { writeSpillFile } from './spill/spill-file.ts';
import { openDurability } from './wal/open-durability.ts';
import { replayRecovered } from './wal/replay.ts';
import { LOG_REDACTIONS } from './telemetry/log-redaction.ts';
import { createMetrics } from './telemetry/metrics.ts';
import { startTracing, traceLogFields } from './telemetry/tracing.ts';

const EXIT_CONFIG = 2;
const EXIT_SPILLED = 3;
const EXIT_WAL_FAILED = 4;

function readConfig(): Config {
  try {
    return loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }
}

const config = readConfig();
const logger = pino({ level: config.logLevel, redact: LOG_REDACTIONS, mixin: traceLogFields });
const stopTracing = await startTracing(process.env, logger);

let embedded: EmbeddedDatabase | undefined;
let databaseUrl = config.databaseUrl;
if (databaseUrl === undefined) {
  embedded = await startEmbeddedPostgres({ dataDir: path.join(config.dataDir, 'postgres'), logger });
  databaseUrl = embedded.url;
}
await migrate(databaseUrl, logger);

const pool = createPool(databaseUrl, config.db, logger);
const metrics = createMetrics();
metrics.buildInfo.set({ version: packageVersion(), node: process.version }, 1);
if (!config.auth.enabled) {
  logger.warn(
    'AUTH=off: POST /event and /events accept events for any tenant from anyone who can reach this port. Use it for local development only; in production leave AUTH on and create keys with `npm run keys -- create --tenant <tenant>`',
  );
}
// A failed WAL write or fsync: stop at once, acknowledge nothing more; the next start recovers.
const wal = await openDurability(config, metrics, logger, (error) => {
  logger.fatal({ err: error }, 'the write-ahead log failed; exiting without acknowledging anything more. Check the disk; the next start recovers from the log');
  process.exit(EXIT_WAL_FAILED);
}).catch((error: unknown) => {
  logger.fatal(
    { err: error, directory: config.durability.directory },
    'cannot open the write-ahead log directory; nothing can be acknowledged without it. Make DATA_DIR/wal writable (or set DURABILITY=memory, accepting its loss window)',
  );
  return process.exit(EXIT_WAL_FAILED);
});
const { app, pipeline, deadLetterQueue } = createIngestService({ config, pool, clock: systemClock, logger, metrics, durability: wal.durability });
// METRICS_PORT: /metrics on a listener of its own, so it need not be exposed with the public one.
const metricsApp = config.metricsPort === undefined ? undefined : createMetricsApp(metrics.registry, logger);
// Find out now, not at the first dead letter, whether DATA_DIR/dlq is writable (/readyz reports it).
await deadLetterQueue.probe().catch((error: unknown) =>
  logger.error({ err: error, directory: deadLetterQueue.directory }, 'the dead-letter directory is not writable; /readyz fails until it is. Fix its permissions or free disk space'),
);
await recoverSpill(config.dataDir, pipeline, logger);
await replayRecovered(wal.recovered, pipeline, metrics, logger);

closeWithGrace(
  { delay: config.shutdownTimeoutMs + 10_000, logger },
  async ({ signal, err }) => {
    const startedAtMs = Date.now();
    if (err) logger.error({ err }, 'fatal error; draining the queue before exit');
    logger.info({ signal, queued: pipeline.batcher.depth }, 'shutting down: intake closed, draining the queue');
    // 1. readiness turns 503 and new events get 503; 2. stop listening, let in-flight requests finish.
    pipeline.beginDrain();
    await raceDeadline(app.close(), config.shutdownTimeoutMs);
    // 3. drain the batcher within what is left of the deadline; spill what could not be stored.
    const remainingMs = Math.max(config.shutdownTimeoutMs - (Date.now() - startedAtMs), 0);
    const unstored = await pipeline.shutdown(remainingMs);
    if (unstored.length > 0 && wal.durability.mode === 'wal') {
      pipeline.recordSpilled(unstored.length, 'left_in_wal');
      logger.error({ events: unstored.length }, 'shutdown deadline passed with events unstored; they stay in the write-ahead log and are replayed at the next start');
    } else if (unstored.length > 0) {
      const file = await writeSpillFile(config.dataDir, unstored, Date.now());
      pipeline.recordSpilled(unstored.length);
      logger.error({ file, events: unstored.length }, 'unstored events written to the spill file; they are re-ingested at the next start');
    }
    // 4. close the log, the dead-letter file and the pool, then the embedded database.
    await wal.close();
    await deadLetterQueue.close();
    await pool.end();
    await metricsApp?.close();
    await embedded?.stop();
    await stopTracing();
    logger.info({ durationMs: Date.now() - startedAtMs, spilled: unstored.length }, 'shutdown complete');
    if (unstored.length > 0) process.exit(EXIT_SPILLED);
  },
);

function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
  return manifest.version ?? 'unknown';
}

function raceDeadline(promise: Promise<unknown>, deadlineMs: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

await app.listen({ host: config.host, port: config.port });
if (metricsApp) await metricsApp.listen({ host: config.host, port: config.metricsPort ?? 0 });
