/** One accepted event on its way to storage: its id and its row, already encoded for COPY. */
export interface QueuedEvent {
  readonly id: string;
  /** One COPY text line, newline-terminated. */
  readonly row: string;
  /** UTF-8 bytes of `row`. */
  readonly bytes: number;
}

export interface WriteResult {
  /** Rows newly inserted; the rest of the batch was already stored (duplicate ids). */
  readonly inserted: number;
}

/** The storage port. Implementations write the whole batch or throw; they never half-write it. */
export interface Sink {
  write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult>;
}
