-- Up Migration
-- The record of a tenant's chain head re-derived by the service (AUDIT_CHAIN=on, DESIGN.md "Tamper
-- evidence", "A head deleted or edited behind the service"). audit_chain_heads is a side table: it
-- only says where the tenant's last link is, so appending can lock one row. When the service finds
-- a head missing (deleted behind it) or behind the tenant's last link (rewound), appending after
-- it would collide with a link that exists; instead it moves the head to the last link, in the same
-- transaction that holds the head's lock and appends the next link, and writes one row here. The
-- links and events are left as they were: nothing is repaired but the pointer, and this row (with
-- the error log and ingest_audit_heads_recovered_total) says that it was, when, and what was found.
-- `npm run audit -- verify` lists these rows beside its verdict.
CREATE TABLE audit_chain_head_recoveries (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant       text        NOT NULL,
  -- missing: no head row while links existed; behind: a head whose seq was before the last link's.
  found        text        NOT NULL CHECK (found IN ('missing', 'behind')),
  -- The head as found (NULL when missing).
  found_seq    bigint,
  found_hash   bytea,
  -- The last link the head was moved to, which the appended link follows.
  last_seq     bigint      NOT NULL CHECK (last_seq > 0),
  last_hash    bytea       NOT NULL,
  recovered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_chain_head_recoveries_tenant ON audit_chain_head_recoveries (tenant, id);

-- Down Migration
DROP TABLE audit_chain_head_recoveries;
