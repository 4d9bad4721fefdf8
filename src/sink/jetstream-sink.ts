import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import type { QueuedEvent } from '../event/queued-event.ts';
import { toJetStreamError } from '../jetstream/errors.ts';
import { messageIdOf, subjectOfTenant } from '../jetstream/subject.ts';
import { isPermanentFailure } from '../db/failure-class.ts';
import { NOTHING_DEAD_LETTERED, type Sink, type WriteResult } from './sink.ts';
import { untilAborted } from './retry-policy.ts';

/** How many ids published by attempts that failed as a whole are remembered (see #publishedBefore). */
const REMEMBERED_IDS = 100_000;

/**
 * Publishes a batch to a JetStream stream: every event on `audit.<tenant>` with `Nats-Msg-Id`
 * `<tenant>/<id>` and its COPY row as payload. All publishes of the batch go out at once (async,
 * pipelined on one connection) and the write settles only when every one is acknowledged by the
 * stream. If any fails, the write throws (after the others settled): transient failures win over
 * permanent ones, so a batch is split for poison only when nothing but refusals failed. A retry
 * re-publishes the whole batch with the same ids; the stream's duplicate window stores each once.
 *
 * `inserted` counts acknowledgements that were not duplicates, plus duplicates of an id this sink
 * published itself in an attempt that failed as a whole (so a retried batch still counts each event
 * stored once, not as a duplicate).
 */
export class JetStreamSink implements Sink {
  readonly #js: JetStreamClient;
  readonly #publishTimeoutMs: number;
  readonly #subjectPrefix: string;
  /** Msg-Ids acknowledged as new in attempts that then failed; insertion order, bounded. */
  readonly #publishedBefore = new Set<string>();

  constructor(js: JetStreamClient, options: { publishTimeoutMs: number; subjectPrefix: string }) {
    this.#js = js;
    this.#publishTimeoutMs = options.publishTimeoutMs;
    this.#subjectPrefix = options.subjectPrefix;
  }

  async write(batch: readonly QueuedEvent[], { signal }: { signal: AbortSignal }): Promise<WriteResult> {
    signal.throwIfAborted();
    const ids = batch.map(messageIdOf);
    const publishes = batch.map((event, index) => this.#publish(event, ids[index]!));
    const outcomes = await untilAborted(Promise.allSettled(publishes), signal);
    let inserted = 0;
    let transient: Error | undefined;
    let permanent: Error | undefined;
    for (const [index, outcome] of outcomes.entries()) {
      const id = ids[index]!;
      if (outcome.status === 'rejected') {
        const error = toJetStreamError(outcome.reason, `publishing event ${id}`);
        if (isPermanentFailure(error)) permanent ??= error;
        else transient ??= error;
      } else if (!outcome.value.duplicate || this.#publishedBefore.delete(id)) {
        inserted += 1;
      }
    }
    const failure = transient ?? permanent;
    if (failure !== undefined) {
      for (const [index, outcome] of outcomes.entries()) {
        if (outcome.status === 'fulfilled' && !outcome.value.duplicate) this.#remember(ids[index]!);
      }
      throw failure;
    }
    return { inserted, deadLettered: NOTHING_DEAD_LETTERED };
  }

  #publish(event: QueuedEvent, msgID: string): Promise<PubAck> {
    try {
      return this.#js.publish(subjectOfTenant(this.#subjectPrefix, event.tenant), event.row, { msgID, timeout: this.#publishTimeoutMs });
    } catch (error) {
      return Promise.reject(toJetStreamError(error, `publishing event ${msgID}`)); // a payload the client refuses before sending it
    }
  }

  #remember(id: string): void {
    this.#publishedBefore.add(id);
    if (this.#publishedBefore.size > REMEMBERED_IDS) {
      const oldest = this.#publishedBefore.values().next();
      if (!oldest.done) this.#publishedBefore.delete(oldest.value);
    }
  }
}
