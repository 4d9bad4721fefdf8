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

/**
 * One event as one COPY text line, newline-terminated. `id` is the id the service settled on.
 * The id, tenant, timestamps, outcome and source IP are validated into forms that never hold a
 * character COPY escapes; the free-text fields are tested together once, and escaped one by one
 * only when one of them needs it (built by concatenation: this runs for every event).
 */
export function encodeEventRow(event: AuditEvent, id: string, receivedAtIso: string): string {
  const { actor, target } = event;
  const metadata = event.metadata === undefined ? undefined : metadataJson(event.metadata);
  const free =
    event.action + actor.id + (actor.type ?? '') + (actor.name ?? '') + (target?.id ?? '') + (target?.type ?? '') + (target?.name ?? '') + (event.user_agent ?? '') + (metadata ?? '');
  const text = NEEDS_ESCAPE.test(free) ? encodeCopyValue : orNull;
  return (
    id + '\t' + event.tenant + '\t' + event.occurred_at + '\t' + receivedAtIso + '\t' +
    text(event.action) + '\t' + text(actor.id) + '\t' + text(actor.type) + '\t' + text(actor.name) + '\t' +
    text(target?.id) + '\t' + text(target?.type) + '\t' + text(target?.name) + '\t' +
    event.outcome + '\t' + orNull(event.source_ip) + '\t' + text(event.user_agent) + '\t' + text(metadata) + '\n'
  );
}

/** A value known to need no escaping, or NULL. */
function orNull(value: string | null | undefined): string {
  return value === null || value === undefined ? '\\N' : value;
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
