import type { RetryPolicy } from 'cockatiel';
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import type { DeadLetterQueue } from '../dlq/dead-letter-queue.ts';
import { toDeadLetterRecord } from '../dlq/dead-letter-record.ts';
import type { DeadLetterWriter } from './poison-splitting-sink.ts';
import { createRetryPolicy, executeUntilAborted, type RetryOptions } from './retry-policy.ts';
import type { QueuedEvent } from '../event/queued-event.ts';

export interface DurableDeadLetterHooks {
  readonly onWritten?: (count: number) => void;
  readonly onWriteError?: (error: unknown) => void;
}

/**
 * Writes isolated events to the dead-letter queue and resolves only once they are fsynced.
 * A failed write (disk full, unwritable directory) is loud (log, metric, /readyz) and retried
 * with backoff until it succeeds or the drain deadline passes: the events stay in the queue
 * meanwhile, so they are never dropped.
 */
export class DurableDeadLetterWriter implements DeadLetterWriter {
  readonly #queue: DeadLetterQueue;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #hooks: DurableDeadLetterHooks;
  readonly #policy: RetryPolicy;

  constructor(queue: DeadLetterQueue, options: { clock: Clock; logger: Logger; retry: RetryOptions } & DurableDeadLetterHooks) {
    this.#queue = queue;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#hooks = options;
    this.#policy = createRetryPolicy({ ...options.retry, maxAttempts: 0 }, () => true);
  }

  async write(events: readonly QueuedEvent[], error: unknown, attempts: number, signal: AbortSignal): Promise<void> {
    const records = events.map((event) => toDeadLetterRecord(event, error, attempts, this.#clock.now()));
    await executeUntilAborted(this.#policy, async () => {
      try {
        await this.#queue.append(records);
      } catch (writeError) {
        this.#hooks.onWriteError?.(writeError);
        this.#logger.error(
          { err: writeError, events: events.length },
          'could not write to the dead-letter queue; the events stay queued and the write is retried. Free disk space or fix the permissions of DATA_DIR/dlq',
        );
        throw writeError;
      }
    }, signal);
    this.#hooks.onWritten?.(events.length);
    for (const record of records) {
      this.#logger.warn(
        { id: record.event.id, tenant: record.event.tenant, sqlstate: record.error.sqlstate, error: record.error.message, attempts },
        'an event was refused by the database and dead-lettered; fix the cause, then run `npm run dlq -- redrive`',
      );
    }
  }
}
