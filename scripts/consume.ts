/**
 * `npm run consume`: a durable JetStream pull consumer that writes the stream's events to
 * PostgreSQL through the service's sink chain (COPY, idempotent on (tenant, id), poison isolation,
 * dead-letter queue), acknowledging each batch only after it committed. Run it beside a service
 * started with SINK=jetstream; several consumers with one NATS_CONSUMER share the work.
 *
 * Reads the service's variables (DATABASE_URL — embedded under DATA_DIR when unset —, NATS_URL,
 * NATS_STREAM, NATS_SUBJECT_PREFIX, DB_*, RETRY_*, BREAKER_*, METRICS_PORT/HOST) with DATA_DIR
 * defaulting to ./.data-consumer and METRICS_PORT to 9465, plus NATS_CONSUMER,
 * CONSUMER_BATCH_SIZE, CONSUMER_FETCH_EXPIRES_MS and CONSUMER_ACK_WAIT_MS.
 *
 * SIGTERM / SIGINT: stop after the batch in hand, exit 0. Exit 2: bad configuration; 1: start failed.
 */
import { pino } from 'pino';
import { ConfigError } from '../src/config.ts';
import { loadConsumerConfig, type ConsumerConfig } from '../src/consumer/consumer-config.ts';
import { ConsumerRuntime } from '../src/consumer/consumer-runtime.ts';
import { onShutdownSignals } from '../src/shutdown-signals.ts';
import { errorSerializers } from '../src/telemetry/error-serializer.ts';
import { LOG_REDACTIONS } from '../src/telemetry/log-redaction.ts';

let config: ConsumerConfig;
try {
  config = loadConsumerConfig(process.env);
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
const logger = pino({ level: config.service.logLevel, redact: LOG_REDACTIONS, serializers: errorSerializers });

let runtime: ConsumerRuntime;
try {
  runtime = await ConsumerRuntime.start(config, logger);
} catch (error) {
  logger.fatal({ err: error }, 'the consumer could not start');
  process.exit(1);
}
if (runtime.metricsAddress) logger.info({ metrics: `${runtime.metricsAddress}/metrics` }, 'consumer metrics listening');
onShutdownSignals({
  onShutdown: (signal) => {
    logger.info({ signal }, 'stopping after the batch in hand');
    void runtime.close().then(() => process.exit(0));
  },
  onForce: () => process.exit(1),
});
await runtime.run();
await runtime.close();
process.exit(0);
