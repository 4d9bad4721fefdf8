import { EVENT_COLUMNS, encodeCopyValue } from './copy-row.ts';
import { IngestInternalError } from '../internal-errors.ts';

export type EventColumn = (typeof EVENT_COLUMNS)[number];

/** One event row by column name, as COPY carries it: text, or null for `\N`. */
export type EventRecord = Record<EventColumn, string | null>;

export class CopyRowDecodeError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('EVENT_ERR_COPY_ROW_DECODE', message, options);
  }
}

const UNESCAPES: Record<string, string> = { '\\': '\\', t: '\t', n: '\n', r: '\r' };
const ESCAPE_SEQUENCE = /\\([\s\S]?)/g;

/**
 * The inverse of encodeCopyValue: `\N` alone is NULL; `\\`, `\t`, `\n` and `\r` are unescaped.
 * Any other escape is one the encoder never writes, so it is refused rather than guessed at.
 */
export function decodeCopyValue(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  return field.replace(ESCAPE_SEQUENCE, (sequence, escaped: string) => {
    const value = UNESCAPES[escaped];
    if (value === undefined) {
      throw new CopyRowDecodeError(
        escaped === '' ? 'the field ends in a lone backslash' : `unsupported escape sequence ${JSON.stringify(sequence)}`,
      );
    }
    return value;
  });
}

/** The inverse of encodeEventRow: one COPY text line (its trailing newline optional) by column. */
export function decodeCopyRow(row: string): EventRecord {
  const line = row.endsWith('\n') ? row.slice(0, -1) : row;
  if (/[\n\r]/.test(line)) throw new CopyRowDecodeError('the row holds an unescaped newline or carriage return');
  const fields = line.split('\t');
  if (fields.length !== EVENT_COLUMNS.length) {
    throw new CopyRowDecodeError(`the row has ${fields.length} fields; events have ${EVENT_COLUMNS.length} columns`);
  }
  const record = {} as EventRecord;
  EVENT_COLUMNS.forEach((column, index) => {
    record[column] = decodeCopyValue(fields[index]!);
  });
  return record;
}

/** One event record as one COPY text line, newline-terminated: what encodeEventRow produced. */
export function encodeCopyColumns(record: EventRecord): string {
  return EVENT_COLUMNS.map((column) => encodeCopyValue(record[column])).join('\t') + '\n';
}
