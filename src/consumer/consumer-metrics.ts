import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** `npm run consume`'s own instruments, beside the sink chain's (retries, breaker, dead letters). */
export function createConsumerMetrics(registry: Registry) {
  const messages = new Counter({
    name: 'ingest_consumer_messages_total',
    help: 'Messages the JetStream consumer settled, by outcome: stored (newly inserted), duplicate (already in PostgreSQL), dead_lettered (refused by the database; in DATA_DIR/dlq), undecodable (not a COPY row, or not on its tenant\'s subject; terminated, left in the stream)',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  for (const outcome of ['stored', 'duplicate', 'dead_lettered', 'undecodable'] as const) messages.inc({ outcome }, 0);
  return {
    messages,
    pending: new Gauge({
      name: 'ingest_consumer_pending_messages',
      help: "Messages in the stream not yet delivered to the durable consumer (its num_pending): the consumer's lag",
      registers: [registry],
    }),
    ackPending: new Gauge({
      name: 'ingest_consumer_ack_pending_messages',
      help: 'Messages delivered to the consumer and not yet acknowledged (its num_ack_pending): batches being written, or left by a killed consumer until CONSUMER_ACK_WAIT_MS',
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'ingest_consumer_batch_size',
      help: 'Messages per fetched batch written to PostgreSQL',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
      registers: [registry],
    }),
    batchDuration: new Histogram({
      name: 'ingest_consumer_batch_duration_seconds',
      help: 'From a batch fetched to its messages acknowledged (the write through the sink chain, retries included)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    unacknowledged: new Counter({
      name: 'ingest_consumer_unacknowledged_messages_total',
      help: 'Messages of fetched batches whose write failed (retries exhausted, or aborted by the shutdown deadline): left unacknowledged, JetStream redelivers them after CONSUMER_ACK_WAIT_MS',
      registers: [registry],
    }),
    fetchErrors: new Counter({
      name: 'ingest_consumer_fetch_errors_total',
      help: 'Fetches from JetStream that failed (NATS down, consumer or stream missing); the consumer backs off and fetches again',
      registers: [registry],
    }),
  };
}

export type ConsumerMetrics = ReturnType<typeof createConsumerMetrics>;
