import { isPermanentFailure } from '../db/failure-class.ts';
import { tracer } from '../telemetry/tracing.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink, WriteResult } from './sink.ts';

/** Where isolated events go. Resolves only once they are durably recorded. */
export interface DeadLetterWriter {
  write(events: readonly QueuedEvent[], error: unknown, attempts: number, signal: AbortSignal): Promise<void>;
}

export interface PoisonSplittingOptions {
  readonly deadLetter: DeadLetterWriter;
  /** Called for each split, so the cost of isolating poison can be seen. */
  readonly onSplit?: (size: number) => void;
}

/**
 * Isolates the events the database refuses for good. A batch that fails for a permanent reason
 * (class 22/23/42, see failure-class.ts) is split in halves and each half written on its own,
 * recursively, so k bad events in a batch of n cost O(k log n) statements and every good event
 * is still stored. A single event that still fails is dead-lettered. Transient failures pass
 * through untouched: they are the retry decorator's business.
 */
export class PoisonSplittingSink implements Sink {
  readonly #inner: Sink;
  readonly #options: PoisonSplittingOptions;

  constructor(inner: Sink, options: PoisonSplittingOptions) {
    this.#inner = inner;
    this.#options = options;
  }

  write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    return this.#write(batch, 0, 1, options.signal);
  }

  async #write(events: readonly QueuedEvent[], offset: number, attempt: number, signal: AbortSignal): Promise<WriteResult> {
    try {
      const result = await this.#inner.write(events, { signal });
      return offset === 0 ? result : { inserted: result.inserted, deadLettered: result.deadLettered.map((i) => i + offset) };
    } catch (error) {
      if (!isPermanentFailure(error)) throw error;
      if (events.length === 1) {
        await this.#options.deadLetter.write(events, error, attempt, signal);
        return { inserted: 0, deadLettered: [offset] };
      }
      this.#options.onSplit?.(events.length);
      const middle = Math.ceil(events.length / 2);
      return tracer().startActiveSpan('batch.split', { attributes: { 'batch.size': events.length, 'batch.offset': offset } }, async (span) => {
        try {
          const left = await this.#write(events.slice(0, middle), offset, attempt + 1, signal);
          const right = await this.#write(events.slice(middle), offset + middle, attempt + 1, signal);
          span.setAttribute('batch.dead_lettered', left.deadLettered.length + right.deadLettered.length);
          return { inserted: left.inserted + right.inserted, deadLettered: [...left.deadLettered, ...right.deadLettered] };
        } finally {
          span.end();
        }
      });
    }
  }
}
