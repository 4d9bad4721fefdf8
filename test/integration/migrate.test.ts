import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { migrate } from '../../src/db/migrate.ts';
import { createTestDatabase } from '../helpers/database.ts';

describe('migrations', () => {
  it('apply once when two replicas migrate at the same time, and again is a no-op', async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      const applied: string[][] = [];
      const logger = { info: (fields: { migrations?: string[] }) => applied.push(fields.migrations ?? []) };
      await Promise.all([migrate(db.url, logger as never), migrate(db.url, logger as never)]);
      await migrate(db.url, logger as never);
      assert.deepEqual(applied, [['0001_events', '0002_api_keys', '0003_events_tenant_scoped_id', '0004_events_partitioned', '0005_event_counts', '0006_tenant_limits', '0007_audit_chain', '0008_audit_chain_head_recoveries']], 'exactly one replica applied the migrations');
      const { rows } = await db.pool.query<{ name: string }>('SELECT name FROM ingest_migrations ORDER BY id');
      assert.deepEqual(rows, [{ name: '0001_events' }, { name: '0002_api_keys' }, { name: '0003_events_tenant_scoped_id' }, { name: '0004_events_partitioned' }, { name: '0005_event_counts' }, { name: '0006_tenant_limits' }, { name: '0007_audit_chain' }, { name: '0008_audit_chain_head_recoveries' }]);
      assert.equal(await db.count(), 0);
    } finally {
      await db.drop();
    }
  });
});
