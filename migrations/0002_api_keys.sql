-- Up Migration
-- Per-tenant API keys. Only a SHA-256 of each key's secret is stored: keys are 256-bit random,
-- so a fast hash is as strong as a slow one and costs ~1 µs per request on a cache miss.
CREATE TABLE api_keys (
  id          text        PRIMARY KEY,            -- public key id, the part of the key before the secret
  tenant      text        NOT NULL,
  secret_hash bytea       NOT NULL,
  label       text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz,                        -- set by rotation: the old key works until then
  revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant);

-- Down Migration
DROP TABLE api_keys;
