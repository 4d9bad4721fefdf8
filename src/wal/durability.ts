import type { QueuedEvent } from '../event/queued-event.ts';
import type { WriteAheadLog } from './write-ahead-log.ts';

/**
 * What "accepted" means before the event is acknowledged. `memory`: nothing more (a crash loses
 * the queue). `wal`: the event is in the write-ahead log, fsynced, and stays there until it is
 * settled, so a crash loses nothing acknowledged.
 */
export interface Durability {
  readonly mode: 'memory' | 'wal';
  /**
   * The events as they must be queued (with their log positions) once durable: at once when
   * nothing has to be waited for (memory), else a promise. All or none: when it throws or
   * rejects, none of the events will be replayed by a later start.
   */
  persist(events: readonly QueuedEvent[]): readonly QueuedEvent[] | Promise<readonly QueuedEvent[]>;
  /** These events are settled (stored, duplicate or dead-lettered). */
  settle(events: readonly QueuedEvent[]): void;
  /**
   * These persisted events were refused after all (not acknowledged, not queued): withdraw them
   * so no later start replays them. Resolves once that is durable.
   */
  cancel(events: readonly QueuedEvent[]): Promise<void>;
  /** Why new events cannot be made durable right now (→ 503), or undefined. */
  readonly refusing: string | undefined;
  /** The log failed for good (→ 503 INGEST_ERR_WAL_FAILED until the process restarts). */
  readonly failed: boolean;
}

export const memoryDurability: Durability = {
  mode: 'memory',
  persist: (events) => events,
  settle: () => {},
  cancel: () => Promise.resolve(),
  refusing: undefined,
  failed: false,
};

export class WalDurability implements Durability {
  readonly mode = 'wal';
  readonly #wal: WriteAheadLog;

  constructor(wal: WriteAheadLog) {
    this.#wal = wal;
  }

  get refusing(): string | undefined {
    return this.#wal.refusing;
  }

  get failed(): boolean {
    return this.#wal.failed;
  }

  async persist(events: readonly QueuedEvent[]): Promise<readonly QueuedEvent[]> {
    // All or none: refused whole (nothing written) when the log has no room for every record.
    const appended = this.#wal.appendAll(events.map((event) => event.row));
    try {
      // The records of one request are written in one group and share one promise: they become
      // durable together or fail together.
      await appended[0]?.durable;
    } catch (error) {
      // None of these events is acknowledged or queued (a full disk: never written, released here).
      this.#wal.settle(appended.map(({ seq }) => seq));
      throw error;
    }
    const durable = new Array<QueuedEvent>(events.length);
    for (let index = 0; index < events.length; index += 1) durable[index] = withWalSeq(events[index]!, appended[index]!.seq);
    return durable;
  }

  settle(events: readonly QueuedEvent[]): void {
    this.#wal.settle(seqsOf(events));
  }

  cancel(events: readonly QueuedEvent[]): Promise<void> {
    return this.#wal.cancel(seqsOf(events));
  }
}

/**
 * DURABILITY=memory over a write-ahead log an earlier DURABILITY=wal run left behind: nothing new
 * goes to the log, but the replayed events settle there, so its segments are deleted once every
 * one of them is stored.
 */
export class ReplayOnlyDurability implements Durability {
  readonly mode = 'memory';
  readonly refusing = undefined;
  readonly failed = false;
  readonly #wal: WriteAheadLog;

  constructor(wal: WriteAheadLog) {
    this.#wal = wal;
  }

  persist(events: readonly QueuedEvent[]): readonly QueuedEvent[] {
    return events;
  }

  settle(events: readonly QueuedEvent[]): void {
    this.#wal.settle(seqsOf(events));
  }

  cancel(): Promise<void> {
    return Promise.resolve();
  }
}

function* seqsOf(events: readonly QueuedEvent[]): Generator<number> {
  for (const event of events) if (event.walSeq !== undefined) yield event.walSeq;
}

/**
 * The event with its log position, built field by field: an object spread per event was 2 % of
 * the service's busy time in WAL mode (and a literal keeps one shape for the batcher and the sink).
 */
function withWalSeq(event: QueuedEvent, walSeq: number): QueuedEvent {
  const { id, tenant, row, bytes, requestSpan } = event;
  return requestSpan === undefined ? { id, tenant, row, bytes, walSeq } : { id, tenant, row, bytes, walSeq, requestSpan };
}
