-- Up Migration
-- Idempotency is per tenant: the key of an event is (tenant, id), not id alone. With a global key
-- a tenant posting an id another tenant had used was silently dropped as a "duplicate" (and the
-- duplicate counter told it the id existed). Every existing row keeps its place: ids were unique
-- on their own, so they are unique per tenant too; no row is rewritten.
--
-- Replacing the key builds a unique index under an ACCESS EXCLUSIVE lock: writes (and reads) of
-- `events` wait until it is built (the service retries; nothing is lost). On a large table, build
-- it beforehand without blocking anyone:
--   CREATE UNIQUE INDEX CONCURRENTLY events_tenant_id_key ON events (tenant, id);
-- and this migration makes that index the key, which takes a moment only.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class WHERE relname = 'events_tenant_id_key' AND relnamespace = current_schema()::regnamespace) THEN
    ALTER TABLE events DROP CONSTRAINT events_pkey, ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_tenant_id_key;
  ELSE
    ALTER TABLE events DROP CONSTRAINT events_pkey, ADD CONSTRAINT events_pkey PRIMARY KEY (tenant, id);
  END IF;
END
$$;

-- Down Migration
-- Fails (and changes nothing) once two tenants have stored the same id: decide which to keep first.
ALTER TABLE events DROP CONSTRAINT events_pkey, ADD CONSTRAINT events_pkey PRIMARY KEY (id);
