-- Up Migration
-- Tamper evidence (AUDIT_CHAIN=on, DESIGN.md "Tamper evidence"): a per-tenant hash chain over the
-- events the COPY sink inserts, one link per (tenant, committed batch), written in the batch's own
-- transaction. Both tables are this region's own and are not published (`npm run replication`
-- publishes `events` alone): each region chains the events its own services stored, and a row
-- applied from the other region is in the other region's chain (DESIGN.md "Two regions").

-- The leaf of one stored event: SHA-256 of its stored columns in PostgreSQL's binary send format
-- (record_send of one record: each column's type oid, length and value: a NULL is length -1, so no
-- two rows give the same bytes), preceded by a version tag. The binary format is the wire protocol's:
-- it does not depend on the session's TimeZone, DateStyle or extra_float_digits (a timestamptz is
-- its int8 of microseconds, a jsonb its canonical text, an inet its family, bits and address). The
-- writer computes it on the rows it inserted and the verifier on the rows it reads, with this one
-- function, so both hash the same bytes. STABLE, and a plain SQL expression, so PostgreSQL inlines
-- it; the binary form costs less than a text one (no time or jsonb formatting; measured, README
-- "Tamper evidence").
CREATE FUNCTION audit_event_leaf(
  id uuid, tenant text, occurred_at timestamptz, received_at timestamptz, action text,
  actor_id text, actor_type text, actor_name text, target_id text, target_type text, target_name text,
  outcome text, source_ip inet, user_agent text, metadata jsonb
) RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT sha256(record_send(ROW(
    'audit-leaf-v1'::text, id, tenant, occurred_at, received_at,
    action, actor_id, actor_type, actor_name, target_id, target_type, target_name,
    outcome, source_ip, user_agent, metadata
  )))
$$;

-- The head of each tenant's chain: its last link. Locked (INSERT … ON CONFLICT DO UPDATE, tenants in
-- sorted order) by every transaction that appends a link, so links of one tenant are appended one
-- at a time whichever flush slot or replica writes them, and two writers never deadlock.
-- seq 0 with 32 zero bytes is the genesis (no link yet).
CREATE TABLE audit_chain_heads (
  tenant     text        PRIMARY KEY,
  seq        bigint      NOT NULL DEFAULT 0 CHECK (seq >= 0),
  hash       bytea       NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One link: the events one transaction inserted for one tenant (keys and leaves in the same, sorted
-- order), their digest `root` = sha256(leaf_1 || … || leaf_n), and
--   hash = sha256(prev_hash || int8(seq) || root || int8(event_count))
-- (big-endian int8). The verifier recomputes every one of these from the rows and the links.
CREATE TABLE audit_chain_links (
  tenant       text          NOT NULL,
  seq          bigint        NOT NULL CHECK (seq > 0),
  prev_hash    bytea         NOT NULL,
  root         bytea         NOT NULL,
  event_count  integer       NOT NULL CHECK (event_count > 0),
  ids          uuid[]        NOT NULL,
  occurred_ats timestamptz[] NOT NULL,
  leaves       bytea[]       NOT NULL,
  hash         bytea         NOT NULL,
  created_at   timestamptz   NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, seq)
);
-- Hashes and ids do not compress: stored out of line without pglz's attempt at it.
ALTER TABLE audit_chain_links ALTER COLUMN ids SET STORAGE EXTERNAL, ALTER COLUMN occurred_ats SET STORAGE EXTERNAL, ALTER COLUMN leaves SET STORAGE EXTERNAL;

-- Down Migration
DROP TABLE audit_chain_links;
DROP TABLE audit_chain_heads;
DROP FUNCTION audit_event_leaf(uuid, text, timestamptz, timestamptz, text, text, text, text, text, text, text, text, inet, text, jsonb);
