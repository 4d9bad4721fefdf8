import { SpanStatusCode } from '@opentelemetry/api';
import type { RetryPolicy } from 'cockatiel';
import { isTransientFailure } from '../db/failure-class.ts';
import { tracer } from '../telemetry/tracing.ts';
import { createRetryPolicy, executeUntilAborted, type RetryOptions } from './retry-policy.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink, WriteResult } from './sink.ts';

/** Retries a write that failed for a transient reason; a permanent failure passes straight through. */
export class RetryingSink implements Sink {
  readonly #inner: Sink;
  readonly #policy: RetryPolicy;

  readonly #maxAttempts: number;
  readonly #onRetry: ((error: unknown, attempt: number, batchSize: number) => void) | undefined;

  constructor(inner: Sink, options: RetryOptions & { onRetry?: (error: unknown, attempt: number, batchSize: number) => void }) {
    this.#inner = inner;
    this.#policy = createRetryPolicy(options, isTransientFailure);
    this.#onRetry = options.onRetry;
    this.#maxAttempts = options.maxAttempts;
  }

  write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    let attempt = 0;
    const tryOnce = () => {
      attempt += 1;
      // Each try is a child span of the flush: retries are visible in the trace.
      return tracer().startActiveSpan('batch.write', { attributes: { 'batch.attempt': attempt, 'batch.size': batch.length } }, async (span) => {
        try {
          return await this.#inner.write(batch, options);
        } catch (error) {
          span.recordException(error as Error);
          span.setStatus({ code: SpanStatusCode.ERROR });
          const willRetry = isTransientFailure(error) && !options.signal.aborted && (this.#maxAttempts === 0 || attempt < this.#maxAttempts);
          if (willRetry) this.#onRetry?.(error, attempt, batch.length);
          throw error;
        } finally {
          span.end();
        }
      });
    };
    return executeUntilAborted(this.#policy, tryOnce, options.signal);
  }
}
