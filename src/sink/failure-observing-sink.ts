import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink, WriteResult } from './sink.ts';

/**
 * Tells `onFailure` of every failed attempt, then rethrows it unchanged. Placed on the COPY sink,
 * inside retry, so each attempt is seen (a retried timeout is back pressure even when a later try
 * succeeds): the adaptive batch window's congestion signal.
 */
export class FailureObservingSink implements Sink {
  readonly #inner: Sink;
  readonly #onFailure: (error: unknown) => void;

  constructor(inner: Sink, onFailure: (error: unknown) => void) {
    this.#inner = inner;
    this.#onFailure = onFailure;
  }

  async write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    try {
      return await this.#inner.write(batch, options);
    } catch (error) {
      this.#onFailure(error);
      throw error;
    }
  }
}
