import type { RetryPolicy } from 'cockatiel';
import { isTransientFailure } from '../db/failure-class.ts';
import { createRetryPolicy, executeUntilAborted, type RetryOptions } from './retry-policy.ts';
import type { QueuedEvent, Sink, WriteResult } from './sink.ts';

/** Retries a write that failed for a transient reason; a permanent failure passes straight through. */
export class RetryingSink implements Sink {
  readonly #inner: Sink;
  readonly #policy: RetryPolicy;

  constructor(inner: Sink, options: RetryOptions & { onRetry?: (error: unknown, attempt: number) => void }) {
    this.#inner = inner;
    this.#policy = createRetryPolicy(options, isTransientFailure);
    const onRetry = options.onRetry;
    if (onRetry) {
      this.#policy.onRetry((event) => onRetry('error' in event ? event.error : event.value, event.attempt));
    }
  }

  write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    return executeUntilAborted(this.#policy, () => this.#inner.write(batch, options), options.signal);
  }
}
