import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runner } from 'node-pg-migrate';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import { MIGRATIONS_DIR } from '../../src/db/migrate.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, type TestService } from '../helpers/service.ts';

describe('idempotency is scoped to the tenant', () => {
  let db: TestDatabase;
  let service: TestService;
  let keys: { alpha: string; beta: string };

  before(async () => {
    db = await createTestDatabase();
    const store = new ApiKeyStore(db.pool);
    keys = { alpha: (await store.create('alpha')).key, beta: (await store.create('beta')).key };
    service = await buildTestService(db.url, { AUTH: 'on', ACK_MODE: 'committed' });
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  const post = (key: string, event: Record<string, unknown>) =>
    service.app.inject({ method: 'POST', url: '/event', headers: { authorization: `Bearer ${key}` }, payload: event });

  it("stores another tenant's event with the same id, and a tenant's own re-send once", async () => {
    const id = randomUUID();
    assert.equal((await post(keys.alpha, sampleEvent({ id, tenant: 'alpha', action: 'alpha.first' }))).statusCode, 201);
    assert.equal((await post(keys.beta, sampleEvent({ id, tenant: 'beta', action: 'beta.first' }))).statusCode, 201);
    assert.equal((await post(keys.alpha, sampleEvent({ id, tenant: 'alpha', action: 'alpha.again' }))).statusCode, 201);
    assert.equal((await post(keys.beta, sampleEvent({ id, tenant: 'beta', action: 'beta.again' }))).statusCode, 201);
    const { rows } = await db.pool.query<{ tenant: string; action: string }>('SELECT tenant, action FROM events WHERE id = $1 ORDER BY tenant', [id]);
    assert.deepEqual(rows, [
      { tenant: 'alpha', action: 'alpha.first' },
      { tenant: 'beta', action: 'beta.first' },
    ]);
  });

  it('keeps both tenants’ events when the same id arrives for both in one batch', async () => {
    const id = randomUUID();
    const responses = await Promise.all([
      post(keys.alpha, sampleEvent({ id, tenant: 'alpha' })),
      post(keys.beta, sampleEvent({ id, tenant: 'beta' })),
      post(keys.alpha, sampleEvent({ id, tenant: 'alpha' })),
    ]);
    assert.deepEqual(responses.map((r) => r.statusCode), [201, 201, 201]);
    assert.equal(await db.count(`id = '${id}' AND tenant = 'alpha'`), 1);
    assert.equal(await db.count(`id = '${id}' AND tenant = 'beta'`), 1);
  });
});

describe('migration 0003 on a populated table', () => {
  it('keeps every row and makes (tenant, id) the key', async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      const options = { databaseUrl: db.url, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'ingest_migrations', log: () => {} } as const;
      await runner({ ...options, count: 2 });
      await db.pool.query(`INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id)
        SELECT gen_random_uuid(), 't' || (n % 7), now(), now(), 'seed', 'actor' FROM generate_series(1, 5000) AS n`);
      await runner({ ...options, count: 1 }); // 0003 only (0004 partitions the table: partitioned-events.test.ts)
      assert.equal(await db.count(), 5000);
      const { rows } = await db.pool.query<{ key: string }>(
        `SELECT pg_get_constraintdef(oid) AS key FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'p'`,
      );
      assert.deepEqual(rows, [{ key: 'PRIMARY KEY (tenant, id)' }]);
    } finally {
      await db.drop();
    }
  });

  it('uses an index built beforehand with CREATE UNIQUE INDEX CONCURRENTLY, without building another', async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      const options = { databaseUrl: db.url, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'ingest_migrations', log: () => {} } as const;
      await runner({ ...options, count: 2 });
      await db.pool.query('CREATE UNIQUE INDEX CONCURRENTLY events_tenant_id_key ON events (tenant, id)');
      await runner({ ...options, count: 1 });
      const { rows } = await db.pool.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE tablename = 'events' ORDER BY indexname`);
      assert.deepEqual(
        rows.map((r) => r.indexname),
        ['events_pkey', 'events_tenant_actor_occurred_at_idx', 'events_tenant_occurred_at_idx'],
        'the prepared index became the primary key',
      );
    } finally {
      await db.drop();
    }
  });
});
