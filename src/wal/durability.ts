import type { QueuedEvent } from '../sink/sink.ts';
import type { Appended, WriteAheadLog } from './write-ahead-log.ts';

/**
 * What "accepted" means before the event is acknowledged. `memory`: nothing more (a crash loses
 * the queue). `wal`: the event is in the write-ahead log, fsynced, and stays there until it is
 * settled, so a crash loses nothing acknowledged.
 */
export interface Durability {
  readonly mode: 'memory' | 'wal';
  /** Resolves with the events as they must be queued (with their log positions) once durable. */
  persist(events: readonly QueuedEvent[]): Promise<readonly QueuedEvent[]>;
  /** These events are settled (stored, duplicate or dead-lettered), or were never queued. */
  settle(events: readonly QueuedEvent[]): void;
  /** Why new events cannot be made durable right now (→ 503), or undefined. */
  readonly refusing: string | undefined;
}

export const memoryDurability: Durability = {
  mode: 'memory',
  persist: (events) => Promise.resolve(events),
  settle: () => {},
  refusing: undefined,
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

  async persist(events: readonly QueuedEvent[]): Promise<readonly QueuedEvent[]> {
    const appended: Appended[] = [];
    try {
      for (const event of events) appended.push(this.#wal.append(event.row));
      await Promise.all(appended.map(({ durable }) => durable));
    } catch (error) {
      // None of these events is acknowledged or queued: release what did reach the log.
      void Promise.allSettled(appended.map(({ durable }) => durable)).then(() => this.#wal.settle(appended.map(({ seq }) => seq)));
      throw error;
    }
    return events.map((event, index) => ({ ...event, walSeq: appended[index]!.seq }));
  }

  settle(events: readonly QueuedEvent[]): void {
    this.#wal.settle(seqsOf(events));
  }
}

function* seqsOf(events: readonly QueuedEvent[]): Generator<number> {
  for (const event of events) if (event.walSeq !== undefined) yield event.walSeq;
}
