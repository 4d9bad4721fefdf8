import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TenantFairness } from '../../src/http/tenant-fairness.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';

function fairness(depths: Map<string, number>) {
  const clock = createFakeClock();
  const total = () => [...depths.values()].reduce((sum, n) => sum + n, 0);
  return {
    clock,
    fairness: new TenantFairness({
      clock,
      capacity: 1000,
      highWater: 0.8,
      minShare: 10,
      activeWindowMs: 10_000,
      tenantDepth: (tenant) => depths.get(tenant) ?? 0,
      queueDepth: total,
      contendedAbove: 600,
      retryAfterSeconds: () => 3,
    }),
  };
}

describe('TenantFairness', () => {
  it('lets a lone busy tenant use an idle queue (work-conserving below the low-water mark)', () => {
    const depths = new Map([['busy', 500]]);
    const { fairness: fair } = fairness(depths);
    fair.decide('quiet', 1);
    assert.equal(fair.decide('busy', 1).admit, true, '500 is over its half share (400), but the queue is not contended');
  });

  it('refuses a tenant over its share once the queue is contended, and only that tenant', () => {
    const depths = new Map([['busy', 550], ['quiet', 60]]);
    const { fairness: fair } = fairness(depths);
    fair.decide('quiet', 1);
    const busy = fair.decide('busy', 1);
    assert.equal(!busy.admit && busy.code, 'INGEST_ERR_TENANT_OVER_SHARE');
    assert.equal(!busy.admit && busy.retryAfterSeconds, 3);
    assert.equal(fair.decide('quiet', 1).admit, true);
  });

  it('forgets tenants not seen within the active window, so shares grow back', async () => {
    const depths = new Map([['busy', 550], ['a', 30], ['b', 30]]);
    const { clock, fairness: fair } = fairness(depths);
    fair.decide('a', 1);
    fair.decide('b', 1);
    assert.equal(fair.decide('busy', 1).admit, false, 'share 800/3 = 266');
    await clock.tickAsync(11_000);
    depths.set('a', 0);
    depths.set('b', 0);
    depths.set('busy', 650);
    assert.equal(fair.decide('busy', 1).admit, true, 'alone again: share 800');
    assert.equal(fair.activeTenants, 1);
  });
});
