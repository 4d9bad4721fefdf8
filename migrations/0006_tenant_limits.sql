-- Up Migration
-- Per-tenant overrides of the rate limits (TENANT_RATE_LIMIT, TENANT_RATE_BURST,
-- TENANT_BYTE_RATE_LIMIT, TENANT_BYTE_BURST), set with `npm run keys -- limit` and read by every
-- running service every TENANT_LIMITS_POLL_MS. A NULL column falls back to the default.
CREATE TABLE tenant_limits (
  tenant     text        PRIMARY KEY,
  rate       integer     CHECK (rate > 0),
  burst      integer     CHECK (burst > 0),
  byte_rate  bigint      CHECK (byte_rate > 0),
  byte_burst bigint      CHECK (byte_burst > 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE tenant_limits;
