import type pg from 'pg';
import { CoalescingMap } from '../batcher/coalescer.ts';

/**
 * Per-minute counts of the rows a transaction newly inserted into `events` (table event_counts,
 * migration 0004). Only rows the INSERT … ON CONFLICT DO NOTHING actually inserted come back from
 * its RETURNING, so a duplicate, a replay or a re-drive of a stored event adds nothing; the counts
 * are upserted in the same transaction, so they commit (or roll back) with the events they count.
 *
 * The minute is `date_trunc('minute', occurred_at, 'UTC')`: with the zone named, the session's
 * TimeZone cannot move an event into another minute (it can, for a zone with a sub-minute offset).
 * It travels to the client and back as whole seconds since the epoch (exact in a double).
 */
export const ROLLUP_RETURNING = `RETURNING tenant, action, extract(epoch FROM date_trunc('minute', occurred_at, 'UTC'))::bigint::text`;

const UPSERT_COUNTS = `INSERT INTO event_counts (tenant, action, minute, count)
  SELECT tenant, action, to_timestamp(minute_epoch), n
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS r (tenant, action, minute_epoch, n)
  ON CONFLICT (tenant, action, minute) DO UPDATE SET count = event_counts.count + EXCLUDED.count`;

/** One RETURNING row: tenant, action, the minute's start in epoch seconds (text). */
export type InsertedRow = readonly [tenant: string, action: string, minuteEpoch: string];

interface MinuteKey {
  readonly tenant: string;
  readonly action: string;
  readonly minuteEpoch: number;
}

// A text value cannot hold NUL, so joining on it is unambiguous.
const identityOf = (key: MinuteKey) => `${key.tenant}\u0000${key.action}\u0000${key.minuteEpoch}`;
const add = (older: number, newer: number) => older + newer;

/** One total order for every writer: transactions lock count rows in it, so two never deadlock on them. */
function compareKeys(a: MinuteKey, b: MinuteKey): number {
  if (a.tenant !== b.tenant) return a.tenant < b.tenant ? -1 : 1;
  if (a.action !== b.action) return a.action < b.action ? -1 : 1;
  return a.minuteEpoch - b.minuteEpoch;
}

/** The inserted rows coalesced to one count per (tenant, action, minute), in key order. */
export function minuteCounts(rows: readonly InsertedRow[]): (readonly [MinuteKey, number])[] {
  const counts = new CoalescingMap<MinuteKey, number>(identityOf, add);
  for (const [tenant, action, minuteEpoch] of rows) counts.add({ tenant, action, minuteEpoch: Number(minuteEpoch) }, 1);
  return counts.entries().sort(([a], [b]) => compareKeys(a, b));
}

/**
 * Add the inserted rows to event_counts, on the connection (and in the transaction) that inserted
 * them: one statement, its rows in key order (unnest yields them in array order).
 */
export async function addMinuteCounts(client: pg.ClientBase, rows: readonly InsertedRow[]): Promise<void> {
  if (rows.length === 0) return;
  const counts = minuteCounts(rows);
  await client.query(UPSERT_COUNTS, [
    counts.map(([key]) => key.tenant),
    counts.map(([key]) => key.action),
    counts.map(([key]) => key.minuteEpoch),
    counts.map(([, n]) => n),
  ]);
}
