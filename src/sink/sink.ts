import type { QueuedEvent } from '../event/queued-event.ts';

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
