import { decodeCopyRow } from '../event/copy-row-decode.ts';

/**
 * One queued event as the JSON line a receiver's POST /events takes: the inverse of prepareEvent,
 * read from the COPY row. Metadata is inserted as the text that was stored (numbers exactly as
 * sent, see exact-json.ts), never re-serialised. `received_at` is not a field the receiver accepts:
 * it stamps its own (DESIGN.md "Forwarding over HTTP").
 */
export function ndjsonLineOfRow(row: string): string {
  const r = decodeCopyRow(row);
  let line = `{"id":${JSON.stringify(r.id)},"tenant":${JSON.stringify(r.tenant)},"occurred_at":${JSON.stringify(r.occurred_at)},"action":${JSON.stringify(r.action)}`;
  line += `,"actor":${party(r.actor_id, r.actor_type, r.actor_name)}`;
  if (r.target_id !== null || r.target_type !== null || r.target_name !== null) line += `,"target":${party(r.target_id, r.target_type, r.target_name)}`;
  if (r.outcome !== null) line += `,"outcome":${JSON.stringify(r.outcome)}`;
  if (r.source_ip !== null) line += `,"source_ip":${JSON.stringify(r.source_ip)}`;
  if (r.user_agent !== null) line += `,"user_agent":${JSON.stringify(r.user_agent)}`;
  if (r.metadata !== null) line += `,"metadata":${r.metadata}`;
  return `${line}}`;
}

function party(id: string | null, type: string | null, name: string | null): string {
  const fields: string[] = [];
  if (id !== null) fields.push(`"id":${JSON.stringify(id)}`);
  if (type !== null) fields.push(`"type":${JSON.stringify(type)}`);
  if (name !== null) fields.push(`"name":${JSON.stringify(name)}`);
  return `{${fields.join(',')}}`;
}
