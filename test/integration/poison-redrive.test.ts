import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runScript } from '../helpers/run-script.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

const dlq = (args: string[], env: Record<string, string>) => runScript('dlq', args, env);

describe('poison isolation, dead-lettering and re-drive, end to end', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-redrive-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('stores the good events, dead-letters the refused ones, and stores those once after the fix and a re-drive', async () => {
    await db.pool.query("ALTER TABLE events ADD CONSTRAINT schema_bug CHECK (action NOT LIKE 'legacy.%')");
    const service = await buildTestService(db.url, { BATCH_MAX_SIZE: '100' }, { dataDir });
    const sent: { id: string; bad: boolean }[] = [];
    try {
      for (let i = 0; i < 300; i += 1) {
        const bad = i % 29 === 0;
        const id = randomUUID();
        sent.push({ id, bad });
        const response = await service.app.inject({
          method: 'POST',
          url: '/event',
          payload: sampleEvent({ id, tenant: 'redrive', action: bad ? 'legacy.import' : 'document.update' }),
        });
        assert.equal(response.statusCode, 202);
      }
      await waitFor(() => service.pipeline.depth === 0, 10_000, 'every batch to settle');
    } finally {
      await service.close();
    }
    const badIds = sent.filter((s) => s.bad).map((s) => s.id);
    assert.equal(badIds.length, 11);
    assert.equal(await db.count("tenant = 'redrive'"), 300 - 11, 'every good event of the mixed batches is stored');

    const env = { DATA_DIR: dataDir, DATABASE_URL: db.url };
    const stats = JSON.parse((await dlq(['stats', '--json'], env)).stdout) as { records: number };
    assert.equal(stats.records, 11, 'only the refused events are dead-lettered');

    const stillBroken = await dlq(['redrive', '--json'], env);
    assert.equal(stillBroken.code, 1, 'records that still fail stay, and the exit code says so');
    assert.equal((JSON.parse((await dlq(['stats', '--json'], env)).stdout) as { records: number }).records, 11);

    await db.pool.query('ALTER TABLE events DROP CONSTRAINT schema_bug');
    const fixed = await dlq(['redrive', '--json'], env);
    assert.equal(fixed.code, 0, fixed.stdout);
    assert.equal(await db.count("tenant = 'redrive'"), 300);
    const again = await dlq(['redrive', '--json'], env);
    assert.equal(again.code, 0);
    const { rows } = await db.pool.query<{ n: string; distinct_ids: string }>(
      "SELECT count(*) AS n, count(DISTINCT id) AS distinct_ids FROM events WHERE tenant = 'redrive'",
    );
    assert.deepEqual(rows[0], { n: '300', distinct_ids: '300' }, 'every event stored exactly once');
    const stored = await db.pool.query<{ id: string }>('SELECT id FROM events WHERE id = ANY($1::uuid[])', [badIds]);
    assert.equal(stored.rowCount, 11);
  });

  it('answers 422 in ACK_MODE=committed for an event the database refuses, and 201 for the rest of its batch', async () => {
    await db.pool.query("ALTER TABLE events ADD CONSTRAINT schema_bug_2 CHECK (action <> 'refused')");
    const service = await buildTestService(db.url, { ACK_MODE: 'committed', BATCH_MAX_WAIT_MS: '50' }, { dataDir });
    try {
      const [good, bad] = await Promise.all([
        service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'ack', action: 'fine' }) }),
        service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'ack', action: 'refused' }) }),
      ]);
      assert.equal(good.statusCode, 201);
      assert.equal(bad.statusCode, 422);
      assert.equal(bad.json<{ code: string }>().code, 'INGEST_ERR_REJECTED_BY_DATABASE');
    } finally {
      await service.close();
      await db.pool.query('ALTER TABLE events DROP CONSTRAINT schema_bug_2');
    }
  });
});
