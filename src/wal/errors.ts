/** The log refuses new records: WAL_MAX_BYTES reached, or the disk is full. Not acknowledged: 503. */
export class WalFullError extends Error {
  readonly code = 'INGEST_ERR_WAL_FULL';
}

/**
 * A write or fsync failed in a way that leaves the log's durability unknown. The process must
 * stop acknowledging and exit; the next start recovers from what reached the disk.
 */
export class WalFatalError extends Error {
  readonly code = 'INGEST_ERR_WAL_FATAL';
}
