import { CodedError } from './coded-error.ts';

/** Errors raised by the batcher. Match on `code`, never on the message. */
export class BatcherClosedError extends CodedError {
  constructor(message = 'the batcher is shutting down') {
    super('BATCHER_ERR_CLOSED', message);
  }
}

export class BatcherDrainTimeoutError<T = unknown> extends CodedError {
  /** Every item not known to be stored: buffered, waiting, or in flight when the deadline passed. */
  readonly remaining: readonly T[];
  constructor(deadlineMs: number, remaining: readonly T[]) {
    super('BATCHER_ERR_DRAIN_TIMEOUT', `shutdown deadline of ${deadlineMs} ms passed with ${remaining.length} events not yet stored`);
    this.remaining = remaining;
  }
}
