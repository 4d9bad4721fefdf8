import { z } from 'zod';
import { sqlstateOf } from '../db/failure-class.ts';
import { EVENT_COLUMNS } from '../event/copy-row.ts';
import { decodeCopyRow, encodeCopyColumns, type EventRecord } from '../event/copy-row-decode.ts';
import { queuedEventFromRow, type QueuedEvent } from '../event/queued-event.ts';

/**
 * One line of a dead-letter file: an event the database refused for good, why, and when.
 * `event` holds the row decoded by column, so the file can be read and grepped. In the unexpected
 * case that the queued row cannot be decoded, `event` holds only the id and `row` keeps the row
 * verbatim: an event is never dropped for want of a tidy representation.
 */
export interface DeadLetterRecord {
  readonly dead_lettered_at: string;
  /** Writes tried in all, by the service and by every re-drive since. */
  readonly attempts: number;
  readonly error: DeadLetterError;
  readonly event: EventRecord;
  /** Only when the queued row could not be decoded: the row verbatim, which a re-drive writes. */
  readonly row?: string;
  /** Set by a re-drive that tried the record again and failed. */
  readonly last_redrive_at?: string;
}

export interface DeadLetterError {
  /** The PostgreSQL SQLSTATE (five characters), or null when the error did not carry one. */
  readonly sqlstate: string | null;
  readonly message: string;
}

const MESSAGE_MAX_CHARS = 4096;

/** What to record about a failure: its SQLSTATE when it is a PostgreSQL error, and its message. */
export function describeError(error: unknown): DeadLetterError {
  const sqlstate = sqlstateOf(error) ?? null;
  let message = error instanceof Error ? error.message || error.name : String(error);
  if (message.length > MESSAGE_MAX_CHARS) message = `${message.slice(0, MESSAGE_MAX_CHARS)}…`;
  return { sqlstate, message };
}

export function toDeadLetterRecord(event: QueuedEvent, error: unknown, attempts: number, nowMs: number): DeadLetterRecord {
  const base = { dead_lettered_at: new Date(nowMs).toISOString(), attempts, error: describeError(error) };
  try {
    return { ...base, event: decodeCopyRow(event.row) };
  } catch {
    const idOnly = Object.fromEntries(EVENT_COLUMNS.map((column) => [column, null])) as EventRecord;
    return { ...base, event: { ...idOnly, id: event.id }, row: event.row };
  }
}

/** The record's event as a sink can write it again: its verbatim row if it has one. */
export function toQueuedEvent(record: DeadLetterRecord): QueuedEvent {
  let row = record.row ?? encodeCopyColumns(record.event);
  if (!row.endsWith('\n')) row += '\n';
  // The row is what is written; its id and tenant are read from it, as on WAL replay.
  return queuedEventFromRow(row);
}

export function serialiseRecord(record: DeadLetterRecord): string {
  return `${JSON.stringify(record)}\n`;
}

const nullableText = z.string().nullable();
const eventSchema = z.strictObject(
  Object.fromEntries(EVENT_COLUMNS.map((column) => [column, nullableText])) as Record<
    (typeof EVENT_COLUMNS)[number],
    typeof nullableText
  >,
);
const recordSchema = z
  .object({
    dead_lettered_at: z.string(),
    attempts: z.number().int().min(0),
    error: z.object({ sqlstate: z.string().nullable(), message: z.string() }),
    event: eventSchema,
    row: z.string().optional(),
    last_redrive_at: z.string().optional(),
  });

/** Parses one line (without its newline); undefined when it is not a dead-letter record. */
export function parseRecord(line: string): DeadLetterRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  const parsed = recordSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}
