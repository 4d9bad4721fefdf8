import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import { queuedEventFromRow, type QueuedEvent } from '../event/queued-event.ts';
import { TENANT_PATTERN } from '../event/schema.ts';
import { decodeCopyRow } from '../event/copy-row-decode.ts';
import { subjectOfTenant } from '../jetstream/subject.ts';
import type { Sink } from '../sink/sink.ts';
import type { ConsumerMetrics } from './consumer-metrics.ts';

export interface BatchConsumerOptions {
  readonly consumer: Consumer;
  /** The PostgreSQL sink chain (COPY, idempotent on (tenant, id), poison isolation, dead letters). */
  readonly sink: Sink;
  readonly batchSize: number;
  readonly fetchExpiresMs: number;
  /** The consumer's ack wait: a batch still being written says `working` well before it passes. */
  readonly ackWaitMs: number;
  readonly metrics: ConsumerMetrics;
  readonly logger: Logger;
  /** NATS_SUBJECT_PREFIX: a row is taken only from its own tenant's subject (`<prefix>.<tenant>`). */
  readonly subjectPrefix: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The queued event a message carries: exactly one COPY row (one newline, at its end: COPY text
 * escapes every newline inside a value) with a UUID id and a valid tenant. Anything else throws —
 * a payload of several rows would otherwise become several events.
 */
export function eventOfMessage(message: Pick<JsMsg, 'string'>): QueuedEvent {
  const row = message.string();
  if (row.indexOf('\n') !== row.length - 1) throw new Error('the payload is not exactly one newline-terminated row');
  const event = queuedEventFromRow(row);
  if (!UUID.test(event.id) || !TENANT_PATTERN.test(event.tenant)) throw new Error('the row does not start with an event id and a tenant');
  decodeCopyRow(row); // every column there, every escape one the encoder writes (throws otherwise)
  return event;
}

/** eventOfMessage, and the message came on its tenant's own subject (no row for tenant b on `audit.a`). */
export function eventOnItsSubject(message: Pick<JsMsg, 'string' | 'subject'>, subjectPrefix: string): QueuedEvent {
  const event = eventOfMessage(message);
  if (message.subject !== subjectOfTenant(subjectPrefix, event.tenant)) {
    throw new Error(`a row of tenant ${event.tenant} came on subject ${message.subject}, not its tenant's`);
  }
  return event;
}

/** How often the lag gauges are refreshed from the consumer's info when batches do not do it. */
const INFO_REFRESH_MS = 5_000;
const FETCH_BACKOFF = { initialMs: 250, maxMs: 5_000 } as const;

/**
 * The loop behind `npm run consume`: fetch up to `batchSize` messages, write them as one batch
 * through the sink chain, and acknowledge them only after that write settled (stored, duplicate or
 * dead-lettered: all durable). A batch is never acknowledged before its commit, so a consumer killed
 * at any moment leaves its batch unacknowledged and JetStream redelivers it after the ack wait; the
 * primary key (tenant, id) turns the redelivered rows that did commit into duplicates. One batch at
 * a time: the next fetch is sent after the previous batch's acks (on the same connection, in order).
 *
 *   running ── stop() ──► stopping (the fetch in progress is closed early; the batch in hand is
 *                          written and acknowledged) ──► stopped (run() resolves)
 *   A write aborted by `signal` (the drain deadline) leaves its batch unacknowledged: redelivered.
 */
export class JetStreamBatchConsumer {
  readonly #options: BatchConsumerOptions;
  #stopping = false;
  #fetch: ConsumerMessages | undefined;
  #lastInfoAtMs = 0;
  #wakeBackoff: (() => void) | undefined;

  constructor(options: BatchConsumerOptions) {
    this.#options = options;
  }

  /** Stop after the batch in hand; run() resolves then. */
  stop(): void {
    this.#stopping = true;
    void this.#fetch?.close();
    this.#wakeBackoff?.();
  }

  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!this.#stopping && !signal.aborted) {
      let messages: JsMsg[];
      try {
        messages = await this.#fetchBatch();
        failures = 0;
      } catch (error) {
        failures += 1;
        this.#options.metrics.fetchErrors.inc();
        this.#options.logger.warn({ err: error, failures }, 'fetching from JetStream failed; fetching again after a backoff. Check that NATS is up and the stream and consumer exist');
        await this.#sleep(Math.min(FETCH_BACKOFF.initialMs * 2 ** (failures - 1), FETCH_BACKOFF.maxMs));
        continue;
      }
      if (messages.length > 0) await this.#store(messages, signal);
      if (messages.length === 0 || Date.now() - this.#lastInfoAtMs > INFO_REFRESH_MS) await this.#refreshLag();
    }
  }

  async #fetchBatch(): Promise<JsMsg[]> {
    const fetch = await this.#options.consumer.fetch({ max_messages: this.#options.batchSize, expires: this.#options.fetchExpiresMs });
    this.#fetch = fetch;
    if (this.#stopping) void fetch.close();
    const messages: JsMsg[] = [];
    try {
      for await (const message of fetch) messages.push(message);
    } finally {
      this.#fetch = undefined;
    }
    return messages;
  }

  async #store(messages: readonly JsMsg[], signal: AbortSignal): Promise<void> {
    const { metrics, logger, sink } = this.#options;
    const startedAtMs = performance.now();
    const events: QueuedEvent[] = [];
    const carried: JsMsg[] = [];
    for (const message of messages) {
      try {
        events.push(eventOnItsSubject(message, this.#options.subjectPrefix));
        carried.push(message);
      } catch (error) {
        // Not something this service published: keep it in the stream, never redeliver it.
        metrics.messages.inc({ outcome: 'undecodable' });
        logger.error({ err: error, subject: message.subject, seq: message.seq }, 'a stream message is not an event row on its tenant\'s subject; terminated (it stays in the stream)');
        message.term(); // no reason: servers before 2.10.4 do not parse "+TERM <reason>" and would redeliver it
      }
    }
    if (events.length === 0) return;
    // Long writes (the database down, retried until it is back) must not let the ack wait pass.
    const keepAlive = setInterval(() => {
      for (const message of carried) message.working();
    }, Math.max(this.#options.ackWaitMs / 3, 100));
    try {
      const result = await sink.write(events, { signal });
      for (const message of carried) message.ack();
      metrics.messages.inc({ outcome: 'stored' }, result.inserted);
      metrics.messages.inc({ outcome: 'dead_lettered' }, result.deadLettered.length);
      metrics.messages.inc({ outcome: 'duplicate' }, events.length - result.inserted - result.deadLettered.length);
      metrics.batchSize.observe(events.length);
      metrics.batchDuration.observe((performance.now() - startedAtMs) / 1000);
      const last = carried.at(-1);
      if (last) metrics.pending.set(Math.max(last.info.pending, 0));
    } catch (error) {
      // Unacknowledged: redelivered after the ack wait, to this consumer or another.
      metrics.unacknowledged.inc(carried.length);
      logger.error({ err: error, messages: carried.length }, 'a fetched batch could not be written; it is left unacknowledged and will be redelivered');
    } finally {
      clearInterval(keepAlive);
    }
  }

  async #refreshLag(): Promise<void> {
    try {
      const info = await this.#options.consumer.info();
      this.#options.metrics.pending.set(info.num_pending);
      this.#options.metrics.ackPending.set(info.num_ack_pending);
      this.#lastInfoAtMs = Date.now();
    } catch (error) {
      this.#options.logger.debug({ err: error }, 'consumer info failed; the lag gauges keep their last values');
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeBackoff = done;
    });
  }
}
