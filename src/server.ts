/**
 * The process edge: read the environment once, build the logger and the runtime, listen, hand
 * the close to close-with-grace, and map outcomes to exit codes. The only file that exits.
 * Everything with a start and a stop lives in src/runtime.ts.
 */
import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { IngestRuntime, RuntimeStartError } from './runtime.ts';
import { errorSerializers } from './telemetry/error-serializer.ts';
import { onShutdownSignals, SHUTDOWN_SIGNALS } from './shutdown-signals.ts';
import { LOG_REDACTIONS } from './telemetry/log-redaction.ts';
import { traceLogFields } from './telemetry/tracing.ts';

const EXIT_CONFIG = 2;
const EXIT_UNSTORED = 3;
const EXIT_WAL_FAILED = 4;
const EXIT_DATA_DIR_LOCKED = 5;

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
const logger = pino({ level: config.logLevel, redact: LOG_REDACTIONS, mixin: traceLogFields, serializers: errorSerializers });

let runtime: IngestRuntime;
try {
  runtime = await IngestRuntime.start({
    config,
    logger,
    tracingEnvironment: process.env,
    // A failed WAL write or fsync: stop at once, acknowledge nothing more; the next start recovers.
    onFatal: (error) => {
      logger.fatal({ err: error }, 'the write-ahead log failed; exiting without acknowledging anything more. Check the disk; the next start recovers from the log');
      process.exit(EXIT_WAL_FAILED);
    },
  });
} catch (error) {
  // A configuration the start found unusable (e.g. no DATABASE_URL in an image without the
  // embedded PostgreSQL): the same clear message and exit code as a bad variable.
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(EXIT_CONFIG);
  }
  if (error instanceof RuntimeStartError && error.code === 'RUNTIME_ERR_DATA_DIR_LOCKED') {
    logger.fatal({ err: error, dataDir: config.dataDir }, error.message);
    process.exit(EXIT_DATA_DIR_LOCKED);
  }
  if (error instanceof RuntimeStartError && error.code === 'RUNTIME_ERR_DATA_DIR_UNAVAILABLE') {
    logger.fatal({ err: error, dataDir: config.dataDir }, `${error.message}. Make DATA_DIR a writable directory`);
    process.exit(EXIT_WAL_FAILED);
  }
  if (error instanceof RuntimeStartError && error.code === 'RUNTIME_ERR_WAL_UNAVAILABLE') {
    logger.fatal(
      { err: error, directory: config.durability.directory },
      'cannot open the write-ahead log directory; nothing can be acknowledged without it. Make DATA_DIR/wal writable (or set DURABILITY=memory, accepting its loss window)',
    );
    process.exit(EXIT_WAL_FAILED);
  }
  throw error;
}

// close-with-grace owns fatal errors and the close deadline; the signals go through
// onShutdownSignals, which ignores the echo of one Ctrl-C under `npm start` (see shutdown-signals.ts).
const graceful = closeWithGrace({ delay: config.shutdownTimeoutMs + 10_000, logger, skip: [...SHUTDOWN_SIGNALS] }, async ({ err }) => {
  if (err) logger.error({ err }, 'fatal error; draining the queue before exit');
  const report = await runtime.close(config.shutdownTimeoutMs);
  if (report.unstored > 0) process.exit(EXIT_UNSTORED);
});
onShutdownSignals({
  onShutdown: (signal) => {
    logger.info({ signal }, 'signal received: closing');
    graceful.close();
  },
  onEcho: (signal) => logger.debug({ signal }, 'the same signal again within a second (npm forwarding it): ignored'),
  onForce: (signal) => {
    logger.error({ signal }, 'second signal while closing: exiting at once; what is unstored stays in the write-ahead log (memory mode: lost)');
    process.exit(1);
  },
});

await runtime.listen();
