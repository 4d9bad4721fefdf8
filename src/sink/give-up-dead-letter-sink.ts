import type { Logger } from 'pino';
import { sqlstateOf } from '../db/failure-class.ts';
import type { DeadLetterWriter } from './poison-splitting-sink.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink, WriteResult } from './sink.ts';

/**
 * The outermost decorator: when the chain inside gives up on a batch (a finite
 * RETRY_MAX_ATTEMPTS ran out on a transient failure), the batch is dead-lettered rather than lost,
 * and reported as such. A write cut short by the drain deadline (the signal aborted) is not given
 * up: it propagates, and the caller keeps those events (WAL or spill file).
 */
export class GiveUpDeadLetterSink implements Sink {
  readonly #inner: Sink;
  readonly #deadLetter: DeadLetterWriter;
  readonly #attempts: number;
  readonly #logger: Logger;

  constructor(inner: Sink, options: { deadLetter: DeadLetterWriter; retryMaxAttempts: number; logger: Logger }) {
    this.#inner = inner;
    this.#deadLetter = options.deadLetter;
    this.#attempts = options.retryMaxAttempts;
    this.#logger = options.logger;
  }

  async write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    try {
      return await this.#inner.write(batch, options);
    } catch (error) {
      if (options.signal.aborted) throw error;
      this.#logger.error(
        { err: error, sqlstate: sqlstateOf(error), batchSize: batch.length },
        'a batch still failed after every retry (RETRY_MAX_ATTEMPTS); it is dead-lettered for re-drive. Fix the database, then run `npm run dlq -- redrive`',
      );
      await this.#deadLetter.write(batch, error, this.#attempts, options.signal);
      return { inserted: 0, deadLettered: batch.map((_, index) => index) };
    }
  }
}
