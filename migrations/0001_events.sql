-- Up Migration
-- The audit trail. `id` is the idempotency key: a second insert of the same id is skipped.
CREATE TABLE events (
  id          uuid        PRIMARY KEY,
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
  outcome     text        NOT NULL DEFAULT 'unknown' CHECK (outcome IN ('success', 'failure', 'unknown')),
  source_ip   inet,
  user_agent  text,
  metadata    jsonb
);

-- How an audit trail is read: one tenant's events over a time range, and one actor's.
CREATE INDEX events_tenant_occurred_at_idx ON events (tenant, occurred_at DESC);
CREATE INDEX events_tenant_actor_occurred_at_idx ON events (tenant, actor_id, occurred_at DESC);

-- Down Migration
DROP TABLE events;
