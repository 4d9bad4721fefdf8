import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

interface Tally {
  accepted: number;
  refused: Map<number, number>;
}

/**
 * One noisy tenant at 10× the rate of two quiet ones, while the database is stalled (the table is
 * locked) so the queue fills. Returns what each tenant was answered.
 */
async function floodWhileStalled(db: TestDatabase, environment: Record<string, string>): Promise<Record<string, Tally>> {
  const service = await buildTestService(db.url, { QUEUE_CAPACITY: '300', BATCH_MAX_SIZE: '50', ...environment });
  const tallies: Record<string, Tally> = {};
  const tally = (tenant: string) => (tallies[tenant] ??= { accepted: 0, refused: new Map() });
  const locker = await db.pool.connect();
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    for (let round = 0; round < 30; round += 1) {
      const sends = [...Array<string>(10).fill('noisy'), 'quiet-a', 'quiet-b'];
      for (const tenant of sends) {
        const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant }) });
        const entry = tally(tenant);
        if (response.statusCode === 202) entry.accepted += 1;
        else entry.refused.set(response.statusCode, (entry.refused.get(response.statusCode) ?? 0) + 1);
      }
    }
    await locker.query('ROLLBACK');
    const accepted = Object.values(tallies).reduce((sum, t) => sum + t.accepted, 0);
    await waitFor(() => service.pipeline.depth === 0, 10_000, 'the queue to drain');
    assert.equal(service.pipeline.counters().accepted, accepted);
  } finally {
    locker.release();
    await service.close();
  }
  return tallies;
}

describe('per-tenant fairness', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  for (const partition of ['none', 'tenant']) {
    it(`refuses the flooding tenant past its share while the quiet ones see no 429 (BATCH_PARTITION=${partition})`, async () => {
      const tallies = await floodWhileStalled(db, { BATCH_PARTITION: partition });
      // Shares apply once the queue is contended (above 60 % = 180): by then the noisy tenant
      // holds 150, more than its third (80) of the 240-event high-water mark, and is refused.
      assert.equal(tallies.noisy!.accepted, 150);
      assert.equal(tallies.noisy!.refused.get(429), 300 - 150);
      for (const quiet of ['quiet-a', 'quiet-b']) {
        assert.equal(tallies[quiet]!.accepted, 30, `${quiet} was never refused`);
        assert.equal(tallies[quiet]!.refused.size, 0);
      }
    });
  }

  it('without fair shares, the flood pushes the queue into shedding and the quiet tenants are refused too', async () => {
    const tallies = await floodWhileStalled(db, { TENANT_MIN_SHARE: '300' });
    assert.ok((tallies['quiet-a']!.refused.get(429) ?? 0) > 0, 'the quiet tenant was shed');
  });
});
