import type { SpanContext } from '@opentelemetry/api';

/** One accepted event on its way to storage: its id and its row, already encoded for COPY. */
export interface QueuedEvent {
  readonly id: string;
  /** One COPY text line, newline-terminated. */
  readonly row: string;
  /** UTF-8 bytes of `row`. */
  readonly bytes: number;
  /** Its record's sequence number in the write-ahead log, when it has one. */
  readonly walSeq?: number;
  /** The span of the request that brought it, when that request was traced: the flush span links to it. */
  readonly requestSpan?: SpanContext;
}

export interface WriteResult {
  /** Rows newly inserted. */
  readonly inserted: number;
  /** Indexes into the batch of events the database refused for good; they were dead-lettered. */
  readonly deadLettered: readonly number[];
  // Every other event of the batch was already stored: a duplicate id.
}

export const NOTHING_DEAD_LETTERED: readonly number[] = Object.freeze([]);

/** The storage port. Implementations write the whole batch or throw; they never half-write it. */
export interface Sink {
  write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult>;
}
