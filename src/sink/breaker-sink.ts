import { CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen, type CircuitBreakerPolicy } from 'cockatiel';
import { isTransientFailure } from '../db/failure-class.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink, WriteResult } from './sink.ts';

export type BreakerState = 'closed' | 'open' | 'half_open';

const STATE_NAMES: Record<CircuitState, BreakerState> = {
  [CircuitState.Closed]: 'closed',
  [CircuitState.Open]: 'open',
  [CircuitState.HalfOpen]: 'half_open',
  [CircuitState.Isolated]: 'open',
};

export interface BreakerOptions {
  /** Consecutive transient failures that open the breaker. */
  readonly failureThreshold: number;
  /** How long it stays open before one probe batch may try. */
  readonly openMs: number;
  readonly onStateChange?: (state: BreakerState) => void;
}

/**
 * A circuit breaker (cockatiel) in front of a sink. Only transient failures count: a batch the
 * database refused for its content says nothing about the database's health. While open, writes
 * fail at once with cockatiel's BrokenCircuitError (itself transient) and nothing reaches the
 * database; after openMs one probe batch decides between closed and open again.
 */
export class BreakerSink implements Sink {
  readonly #inner: Sink;
  readonly #policy: CircuitBreakerPolicy;

  constructor(inner: Sink, options: BreakerOptions) {
    this.#inner = inner;
    this.#policy = circuitBreaker(handleWhen(isTransientFailure), {
      halfOpenAfter: options.openMs,
      breaker: new ConsecutiveBreaker(options.failureThreshold),
    });
    const onStateChange = options.onStateChange;
    if (onStateChange) this.#policy.onStateChange((state) => onStateChange(STATE_NAMES[state]));
  }

  get state(): BreakerState {
    return STATE_NAMES[this.#policy.state];
  }

  write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    return this.#policy.execute(() => this.#inner.write(batch, options), options.signal);
  }
}
