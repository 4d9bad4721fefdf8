import { z } from 'zod';
import { ConfigError, loadConfig, type Config } from '../config.ts';

/**
 * `npm run consume`'s configuration: the service's own variables (DATABASE_URL, DATA_DIR, DB_*,
 * RETRY_*, BREAKER_*, DLQ_*, NATS_*, METRICS_*) with two defaults of its own, so that it runs
 * beside a service on one machine — DATA_DIR `./.data-consumer` (its embedded PostgreSQL and
 * dead-letter files) and METRICS_PORT 9465 — plus the consumer's variables below.
 */
export interface ConsumerConfig {
  readonly service: Config;
  /** NATS_CONSUMER: the durable pull consumer's name; instances sharing it share the work. */
  readonly durableName: string;
  /** CONSUMER_BATCH_SIZE: most messages fetched, and written in one transaction, at once. */
  readonly batchSize: number;
  /** CONSUMER_FETCH_EXPIRES_MS: how long one fetch waits for its batch to fill (≥ 1000, the client's floor): a batch that does not fill waits this long. */
  readonly fetchExpiresMs: number;
  /** CONSUMER_ACK_WAIT_MS: unacknowledged messages are redelivered after this (a killed consumer's batch). */
  readonly ackWaitMs: number;
}

const CONSUMER_DEFAULTS = { DATA_DIR: './.data-consumer', METRICS_PORT: '9465' } as const;

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const consumerSchema = z.object({
  NATS_CONSUMER: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9_-]').default('audit-ingest-postgres'),
  CONSUMER_BATCH_SIZE: integer(1, 10_000).default(500),
  CONSUMER_FETCH_EXPIRES_MS: integer(1_000, 60_000).default(1_000),
  CONSUMER_ACK_WAIT_MS: integer(1_000, 3_600_000).default(60_000),
});

export function loadConsumerConfig(environment: Record<string, string | undefined>): ConsumerConfig {
  const present = Object.fromEntries(Object.entries(environment).filter(([, value]) => value !== undefined && value !== ''));
  const service = loadConfig({ ...CONSUMER_DEFAULTS, ...present });
  const parsed = consumerSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return Object.freeze({
    service,
    durableName: parsed.data.NATS_CONSUMER,
    batchSize: parsed.data.CONSUMER_BATCH_SIZE,
    fetchExpiresMs: parsed.data.CONSUMER_FETCH_EXPIRES_MS,
    ackWaitMs: parsed.data.CONSUMER_ACK_WAIT_MS,
  });
}
