-- Up Migration
-- Per-minute counts of the audit trail, kept exactly equal to
--   SELECT tenant, action, date_trunc('minute', occurred_at, 'UTC'), count(*) FROM events GROUP BY 1, 2, 3
-- by the COPY sink, in the same transaction as the events it counts (DESIGN.md "Per-minute rollups").
-- `minute` is the start of the minute in UTC: date_trunc on a timestamptz truncates in the session's
-- TimeZone unless told otherwise, and a zone with a sub-minute offset (e.g. Africa/Monrovia,
-- -00:44:30 until 1972) would move events into another minute. The zone is always named.
CREATE TABLE event_counts (
  tenant text        NOT NULL,
  action text        NOT NULL,
  minute timestamptz NOT NULL,
  count  bigint      NOT NULL CHECK (count > 0),
  PRIMARY KEY (tenant, action, minute)
);

-- Count what is already stored. `events` is partitioned (0004): LOCK TABLE on it takes the lock on
-- every partition too, and the scan below reads them all (the DEFAULT partition and `events_legacy`
-- included). SHARE mode lets reads through and holds writers of `events` until this migration
-- commits, so no event is stored between the count and the first counted write; partition
-- maintenance (CREATE … PARTITION OF / ATTACH / DETACH, which move or drop rows) waits too. Duplicates
-- are already one row each under the key (tenant, id, occurred_at), so count(*) is the events.
-- On a large table that is the length of one scan of it: the service retries its writes meanwhile
-- (nothing is lost), or run the count at a quiet moment. Retention keeps the identity: dropping a
-- day's partition deletes that day's count rows in the same transaction (src/db/partition-maintenance.ts).
LOCK TABLE events IN SHARE MODE;
INSERT INTO event_counts (tenant, action, minute, count)
  SELECT tenant, action, date_trunc('minute', occurred_at, 'UTC'), count(*) FROM events GROUP BY 1, 2, 3;

-- Down Migration
DROP TABLE event_counts;
