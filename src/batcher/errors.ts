/** Errors raised by the batcher. Match on `code`, never on the message. */
export class BatcherClosedError extends Error {
  readonly code = 'INGEST_ERR_BATCHER_CLOSED';
  constructor(message = 'the batcher is shutting down') {
    super(message);
    this.name = 'BatcherClosedError';
  }
}

export class BatcherDrainTimeoutError<T = unknown> extends Error {
  readonly code = 'INGEST_ERR_DRAIN_TIMEOUT';
  /** Every item not known to be stored: buffered, waiting, or in flight when the deadline passed. */
  readonly remaining: readonly T[];
  constructor(deadlineMs: number, remaining: readonly T[]) {
    super(`shutdown deadline of ${deadlineMs} ms passed with ${remaining.length} events not yet stored`);
    this.name = 'BatcherDrainTimeoutError';
    this.remaining = remaining;
  }
}
