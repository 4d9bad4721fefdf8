import { metadataJson, type AuditEvent } from './schema.ts';

/** The columns of `events`, in the order the COPY row encodes them. */
export const EVENT_COLUMNS = [
  'id',
  'tenant',
  'occurred_at',
  'received_at',
  'action',
  'actor_id',
  'actor_type',
  'actor_name',
  'target_id',
  'target_type',
  'target_name',
  'outcome',
  'source_ip',
  'user_agent',
  'metadata',
] as const;

const NEEDS_ESCAPE = /[\\\n\r\t]/;
const ESCAPABLE = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * One value in PostgreSQL's COPY text format: NULL is `\N`; backslash, newline, carriage return
 * and tab are backslash-escaped; everything else (including `\.` sequences, which the escape of
 * the backslash already covers) passes through.
 */
export function encodeCopyValue(value: string | null | undefined): string {
  if (value === null || value === undefined) return '\\N';
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPABLE, (ch) => ESCAPES[ch]!) : value;
}

/** One event as one COPY text line, newline-terminated. `id` is the id the service settled on. */
export function encodeEventRow(event: AuditEvent, id: string, receivedAtIso: string): string {
  return (
    [
      id,
      event.tenant,
      event.occurred_at,
      receivedAtIso,
      event.action,
      event.actor.id,
      event.actor.type,
      event.actor.name,
      event.target?.id,
      event.target?.type,
      event.target?.name,
      event.outcome,
      event.source_ip,
      event.user_agent,
      event.metadata === undefined ? undefined : metadataJson(event.metadata),
    ]
      .map(encodeCopyValue)
      .join('\t') + '\n'
  );
}

/** The id column of an encoded row (the first; a UUID, never escaped). */
export function idOfRow(row: string): string {
  return row.slice(0, row.indexOf('\t'));
}

/** The tenant column of an encoded row. Tenants are [A-Za-z0-9._-] only, so never escaped. */
export function tenantOfRow(row: string): string {
  const start = row.indexOf('\t') + 1;
  return row.slice(start, row.indexOf('\t', start));
}
