import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IngestError } from '../../src/errors.ts';
import { TenantFairness } from '../../src/http/tenant-fairness.ts';
import { RoomWaiters } from '../../src/ingest/room-waiters.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';

function fairness(depths: Map<string, number>) {
  const options = optionsOf(depths);
  return { clock: options.clock, fairness: new TenantFairness(options) };
}


/** Call now, synchronously (an async function runs to its first await): a throw becomes a rejection. */
async function run(call: () => Promise<void> | undefined): Promise<void> {
  await call();
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

describe('TenantFairness, policy standing', () => {
  function standing(depths: Map<string, number>) {
    return new TenantFairness({ ...optionsOf(depths), waits: true });
  }
  const codeOf = async (promise: Promise<void>) => promise.then(() => 'admitted', (error: IngestError) => error.code);

  it('a lone tenant is never refused for its share, whatever the count (its share is the whole queue)', async () => {
    const depths = new Map([['only', 900]]);
    const fair = standing(depths);
    assert.equal(fair.shareOf(), 1000);
    assert.equal(await codeOf(run(() => fair.admitWhenUnderShare(new RoomWaiters({ maxRequests: 10, maxEvents: 10_000 }), 'only', 1000, 0))), 'admitted');
    const depth = new TenantFairness({ ...optionsOf(depths), waits: false });
    assert.equal(depth.decide('only', 1000).admit, true, 'policy depth too: a bulk of a lone tenant is not over its share');
  });

  it('a tenant holding its share waits until its events are stored, without holding up other tenants; a wait that runs out refuses it at once after that', async () => {
    const depths = new Map([['busy', 450], ['quiet', 160]]);
    const fair = standing(depths);
    const waiters = new RoomWaiters({ maxRequests: 10, maxEvents: 10_000 });
    fair.decide('quiet', 1);
    assert.equal(fair.decide('busy', 500).admit, true, 'decide only refuses a tenant already refused');
    const waiting = codeOf(run(() => fair.admitWhenUnderShare(waiters, 'busy', 500, 60_000)));
    assert.equal(await codeOf(run(() => fair.admitWhenUnderShare(waiters, 'quiet', 100, 60_000))), 'admitted', 'the quiet tenant goes past the waiting one');
    depths.set('busy', 300); // under its share of 400: may add its bulk, counted once
    waiters.wake();
    assert.equal(await waiting, 'admitted');

    depths.set('busy', 450);
    assert.equal(await codeOf(run(() => fair.admitWhenUnderShare(waiters, 'busy', 1, 10))), 'INGEST_ERR_TENANT_OVER_SHARE');
    const refused = fair.decide('busy', 1);
    assert.equal(!refused.admit && refused.code, 'INGEST_ERR_TENANT_OVER_SHARE', 'refused at once while still over its share');
    depths.set('busy', 100);
    assert.equal(fair.decide('busy', 1).admit, true, 'under its share again');
  });
});

function optionsOf(depths: Map<string, number>) {
  return {
    clock: createFakeClock(),
    capacity: 1000,
    highWater: 0.8,
    minShare: 10,
    activeWindowMs: 10_000,
    tenantDepth: (tenant: string) => depths.get(tenant) ?? 0,
    queueDepth: () => [...depths.values()].reduce((sum, n) => sum + n, 0),
    contendedAbove: 600,
    retryAfterSeconds: () => 3,
  };
}
