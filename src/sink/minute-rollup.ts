import type pg from 'pg';
import { CoalescingMap } from '@audit-ingest/batcher';
import { decodeCopyValue } from '../event/copy-row-decode.ts';
import type { QueuedEvent } from '../event/queued-event.ts';

/**
 * Per-minute counts of the rows a transaction newly inserted into `events` (table event_counts,
 * migration 0005), added in that transaction, so they commit (or roll back) with the events:
 *  - a batch stored by plain COPY was inserted whole (COPY stores every row or fails), so its own
 *    rows are counted (addBatchCounts);
 *  - a batch written the staged way counts only what its INSERT … ON CONFLICT DO NOTHING inserted
 *    (moveAndCountSql, in the database, in the same statement): a duplicate, a replay or a re-drive
 *    of a stored event adds nothing.
 * A plain COPY's rows are first coalesced per key (the Coalescer's combining map), then upserted in
 * one statement; the staged way's are grouped by the database. Either way `count =
 * event_counts.count + EXCLUDED.count`.
 *
 * The minute is `date_trunc('minute', occurred_at, 'UTC')`: with the zone named, the session's
 * TimeZone cannot move an event into another minute (it can, for a zone with a sub-minute offset).
 *
 * Lock order: both statements insert their rows ORDER BY (tenant, action, minute) — the same
 * columns, types and collation — so any two writers, whichever way each wrote, take count rows in
 * one order and never deadlock on them.
 */
const ORDERED_UPSERT = `ORDER BY 1, 2, 3
  ON CONFLICT (tenant, action, minute) DO UPDATE SET count = event_counts.count + EXCLUDED.count`;

// Rows coalesced per (tenant, action, occurred_at cut to its minute where that is safe): the
// database computes the minute and groups what is left.
const UPSERT_BATCH = `INSERT INTO event_counts (tenant, action, minute, count)
  SELECT tenant, action, date_trunc('minute', occurred_at, 'UTC'), sum(n)::bigint
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[]) AS r (tenant, action, occurred_at, n)
   GROUP BY 1, 2, 3
  ${ORDERED_UPSERT}`;

/**
 * The staged move (`move`: an INSERT … SELECT … ON CONFLICT DO NOTHING into events) and the counts of
 * what it inserted, in one statement: the database groups the inserted rows per minute and upserts
 * them (data-modifying CTE). What comes back is `select` over the inserted rows (`moved`: the
 * `returning` columns, by default their id, tenant, occurred_at and action): by default only their
 * number (`inserted`). Same minute and lock order as UPSERT_BATCH.
 */
export function moveAndCountSql(move: string, select = 'count(*)::integer AS inserted', returning = 'id, tenant, occurred_at, action'): string {
  return `WITH moved AS (
    ${move}
    RETURNING ${returning}
  ), counted AS (
    INSERT INTO event_counts (tenant, action, minute, count)
    SELECT tenant, action, date_trunc('minute', occurred_at, 'UTC'), count(*) FROM moved GROUP BY 1, 2, 3
    ${ORDERED_UPSERT}
  )
  SELECT ${select} FROM moved`;
}

interface CountKey {
  readonly tenant: string;
  readonly action: string;
  /** occurred_at cut to its minute (minuteText), or kept whole where PostgreSQL must decide. */
  readonly time: string;
}

// A text value cannot hold NUL, so joining on it is unambiguous.
const identityOf = (key: CountKey) => `${key.tenant}\u0000${key.action}\u0000${key.time}`;
const add = (older: number, newer: number) => older + newer;

async function upsert(client: pg.ClientBase, counts: CoalescingMap<CountKey, number>): Promise<void> {
  const entries = counts.entries();
  if (entries.length === 0) return;
  await client.query(UPSERT_BATCH, [
    entries.map(([key]) => key.tenant),
    entries.map(([key]) => key.action),
    entries.map(([key]) => key.time),
    entries.map(([, n]) => n),
  ]);
}

/** Count a batch the plain COPY stored whole. */
export async function addBatchCounts(client: pg.ClientBase, batch: readonly QueuedEvent[]): Promise<void> {
  const counts = new CoalescingMap<CountKey, number>(identityOf, add);
  for (const event of batch) {
    const { occurredAt, action } = rollupFieldsOfRow(event.row);
    counts.add({ tenant: event.tenant, action, time: minuteText(occurredAt) }, 1);
  }
  await upsert(client, counts);
}

/** occurred_at (the 3rd column) and action (the 5th, COPY-escaped) of an encoded row. */
export function rollupFieldsOfRow(row: string): { occurredAt: string; action: string } {
  const afterId = row.indexOf('\t') + 1;
  const afterTenant = row.indexOf('\t', afterId) + 1;
  const afterOccurred = row.indexOf('\t', afterTenant) + 1;
  const afterReceived = row.indexOf('\t', afterOccurred) + 1;
  const occurredAt = row.slice(afterTenant, afterOccurred - 1);
  const action = decodeCopyValue(row.slice(afterReceived, row.indexOf('\t', afterReceived))) ?? '';
  return { occurredAt, action };
}

/**
 * A validated occurred_at (`YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm)`, schema.ts) cut to the start of
 * its minute in its own offset — the same UTC minute, offsets being whole minutes — so a batch's
 * events coalesce before they reach the database. The one text that is kept whole: second 59 with
 * a fraction PostgreSQL may round up to the next second (more than 6 digits, the first six 9s),
 * hence into the next minute; the database decides that one.
 */
export function minuteText(occurredAt: string): string {
  let zoneAt = 19;
  if (occurredAt.charCodeAt(19) === 0x2e) {
    zoneAt = 20;
    while (zoneAt < occurredAt.length && occurredAt.charCodeAt(zoneAt) >= 0x30 && occurredAt.charCodeAt(zoneAt) <= 0x39) zoneAt += 1;
    const fraction = occurredAt.slice(20, zoneAt);
    if (occurredAt.startsWith('59', 17) && fraction.length > 6 && fraction.startsWith('999999')) return occurredAt;
  }
  return `${occurredAt.slice(0, 16)}:00${occurredAt.slice(zoneAt)}`;
}
