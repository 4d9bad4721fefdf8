import { IngestInternalError } from '../internal-errors.ts';

/** The log refuses new records: WAL_MAX_BYTES reached, or the disk is full. Not acknowledged: 503. */
export class WalFullError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('WAL_ERR_FULL', message, options);
  }
}

/**
 * A write or fsync failed in a way that leaves the log's durability unknown. The process must
 * stop acknowledging and exit; the next start recovers from what reached the disk.
 */
export class WalFailedError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('WAL_ERR_FAILED', message, options);
  }
}
