import type { QueuedEvent } from '../../src/event/queued-event.ts';
import type { Sink, WriteResult } from '../../src/sink/sink.ts';

export const sqlError = (code: string, message = `sqlstate ${code}`) => Object.assign(new Error(message), { code });

/** A sink that follows a script: each write calls `behaviour`, which may throw. Records every call. */
export class ScriptedSink implements Sink {
  readonly calls: (readonly QueuedEvent[])[] = [];
  constructor(private readonly behaviour: (batch: readonly QueuedEvent[], call: number) => void | WriteResult) {}

  async write(batch: readonly QueuedEvent[]): Promise<WriteResult> {
    this.calls.push(batch);
    await Promise.resolve();
    const result = this.behaviour(batch, this.calls.length);
    return result ?? { inserted: batch.length, deadLettered: [] };
  }
}

export function fakeEvents(count: number, poison: ReadonlySet<number> = new Set()): QueuedEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const row = `${id}\t${poison.has(i) ? 'poison' : 'good'}\n`;
    return { id, tenant: 'fake', row, bytes: row.length };
  });
}
