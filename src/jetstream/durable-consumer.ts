import { AckPolicy, DeliverPolicy, type Consumer, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { millis, nanos } from '@nats-io/transport-node';
import type { Logger } from 'pino';

export interface DurableConsumerOptions {
  readonly stream: string;
  readonly name: string;
  readonly filterSubject: string;
  readonly ackWaitMs: number;
  /** At least two batches, so a batch in hand never blocks the next fetch. */
  readonly maxAckPending: number;
}

/**
 * The durable pull consumer, created when missing: explicit acks, every message from the start of
 * the stream, redelivered without limit (max_deliver -1) after `ackWaitMs` while unacknowledged.
 * An existing one keeps its position; its ack wait and max_ack_pending are brought to these values.
 */
export async function ensureDurableConsumer(js: JetStreamClient, jsm: JetStreamManager, options: DurableConsumerOptions, logger: Logger): Promise<Consumer> {
  const existing = await jsm.consumers.info(options.stream, options.name).catch((error: unknown) => {
    if ((error as { name?: string }).name === 'ConsumerNotFoundError') return undefined;
    throw error;
  });
  if (!existing) {
    await jsm.consumers.add(options.stream, {
      durable_name: options.name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: options.filterSubject,
      ack_wait: nanos(options.ackWaitMs),
      max_ack_pending: options.maxAckPending,
      max_deliver: -1,
    });
    logger.info({ stream: options.stream, consumer: options.name }, 'created the durable JetStream consumer');
  } else if (millis(existing.config.ack_wait ?? 0) !== options.ackWaitMs || existing.config.max_ack_pending !== options.maxAckPending) {
    await jsm.consumers.update(options.stream, options.name, { ack_wait: nanos(options.ackWaitMs), max_ack_pending: options.maxAckPending });
    logger.info({ stream: options.stream, consumer: options.name, ackWaitMs: options.ackWaitMs }, 'updated the durable JetStream consumer');
  }
  return js.consumers.get(options.stream, options.name);
}
