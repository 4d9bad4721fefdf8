import type { SpanContext } from '@opentelemetry/api';
import { idOfRow, tenantOfRow } from './copy-row.ts';

/**
 * One accepted event on its way to storage: its id, its tenant and its row, already encoded for
 * COPY. The tenant is set once, at the edge (or derived once from the row on replay and spill),
 * and read from here by everything after: fair shares, partitions, spans.
 */
export interface QueuedEvent {
  readonly id: string;
  readonly tenant: string;
  /** One COPY text line, newline-terminated. */
  readonly row: string;
  /** UTF-8 bytes of `row`. */
  readonly bytes: number;
  /** Its record's sequence number in the write-ahead log, when it has one. */
  readonly walSeq?: number;
  /** The span of the request that brought it, when that request was traced: the flush span links to it. */
  readonly requestSpan?: SpanContext;
}

/** A queued event rebuilt from its encoded row (WAL replay, spill file, dead-letter re-drive). */
export function queuedEventFromRow(row: string, extras: { walSeq?: number; bytes?: number } = {}): QueuedEvent {
  const bytes = extras.bytes ?? Buffer.byteLength(row);
  const event = { id: idOfRow(row), tenant: tenantOfRow(row), row, bytes };
  return extras.walSeq === undefined ? event : { ...event, walSeq: extras.walSeq };
}
