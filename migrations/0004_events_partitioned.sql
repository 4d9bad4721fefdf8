-- Up Migration
-- `events` becomes range-partitioned by occurred_at (one partition per UTC day, created ahead by the
-- service: src/db/partition-maintenance.ts), so retention drops whole partitions instead of deleting rows.
--
-- The key. A unique key on a partitioned table must hold the partition key, so the key becomes
-- (tenant, id, occurred_at). occurred_at is the client's value (required by the schema, never filled
-- in by the service), so a retried event — the same body sent again, by the client or by a WAL or
-- dead-letter replay — maps to the same partition and is still stored once. received_at would not do:
-- the service stamps it, so a client retry carries a new one and would land as a second row.
-- What is given up: the same (tenant, id) with a different occurred_at is now two events.
--
-- The existing rows stay where they are: the old table becomes the partition `events_legacy` for
-- (MINVALUE, start of today UTC), no row is copied. Its rows dated today or later (few) move to the
-- DEFAULT partition, and the service moves those into their day's partition when it creates it.
-- Attaching it builds the (tenant, id, occurred_at) index under the ACCESS EXCLUSIVE lock of this
-- migration (writes wait; the service retries). On a large table, build it beforehand without
-- blocking anyone, and this migration takes it as the key instead of building one:
--   CREATE UNIQUE INDEX CONCURRENTLY events_tenant_id_occurred_at_key ON events (tenant, id, occurred_at);
-- Retention drops `events_legacy` as a whole once its upper bound is older than RETENTION_DAYS.
LOCK TABLE events IN ACCESS EXCLUSIVE MODE;
ALTER TABLE events RENAME TO events_legacy;
ALTER INDEX events_tenant_occurred_at_idx RENAME TO events_legacy_tenant_occurred_at_idx;
ALTER INDEX events_tenant_actor_occurred_at_idx RENAME TO events_legacy_tenant_actor_occurred_at_idx;
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'events_tenant_id_occurred_at_key' AND relnamespace = current_schema()::regnamespace) THEN
    ALTER TABLE events_legacy DROP CONSTRAINT events_pkey,
      ADD CONSTRAINT events_legacy_pkey PRIMARY KEY USING INDEX events_tenant_id_occurred_at_key;
  ELSE
    ALTER TABLE events_legacy DROP CONSTRAINT events_pkey,
      ADD CONSTRAINT events_legacy_pkey PRIMARY KEY (tenant, id, occurred_at);
  END IF;
END
$$;

CREATE TABLE events (
  id          uuid        NOT NULL,
  tenant      text        NOT NULL,
  occurred_at timestamptz NOT NULL,
  received_at timestamptz NOT NULL,
  action      text        NOT NULL,
  actor_id    text        NOT NULL,
  actor_type  text,
  actor_name  text,
  target_id   text,
  target_type text,
  target_name text,
  outcome     text        NOT NULL DEFAULT 'unknown' CONSTRAINT events_outcome_check CHECK (outcome IN ('success', 'failure', 'unknown')),
  source_ip   inet,
  user_agent  text,
  metadata    jsonb,
  CONSTRAINT events_pkey PRIMARY KEY (tenant, id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX events_tenant_occurred_at_idx ON events (tenant, occurred_at DESC);
CREATE INDEX events_tenant_actor_occurred_at_idx ON events (tenant, actor_id, occurred_at DESC);
-- Rows outside every partition (a day not created yet, a far-future or long-past occurred_at).
CREATE TABLE events_default PARTITION OF events DEFAULT;

DO $$
DECLARE
  cutoff timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
BEGIN
  INSERT INTO events SELECT * FROM events_legacy WHERE occurred_at >= cutoff;
  DELETE FROM events_legacy WHERE occurred_at >= cutoff;
  IF EXISTS (SELECT 1 FROM events_legacy) THEN
    EXECUTE format('ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%L)', cutoff);
  ELSE
    DROP TABLE events_legacy;
  END IF;
END
$$;

-- Down Migration
-- Copies every row back into one unpartitioned table keyed (tenant, id). Fails (and changes nothing)
-- once a tenant has stored the same id with two occurred_at values: decide which to keep first.
CREATE TABLE events_unpartitioned (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO events_unpartitioned SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_unpartitioned RENAME TO events;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (tenant, id);
CREATE INDEX events_tenant_occurred_at_idx ON events (tenant, occurred_at DESC);
CREATE INDEX events_tenant_actor_occurred_at_idx ON events (tenant, actor_id, occurred_at DESC);
