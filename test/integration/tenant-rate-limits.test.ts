import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { systemClock, type Clock } from '../../src/clock.ts';
import { runScript } from '../helpers/run-script.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/** Time that moves only when the test says so (timers stay real: the batcher and the poller run). */
function steppedClock(startMs: number): Clock & { advance(ms: number): void } {
  let nowMs = startMs;
  return { now: () => nowMs, setTimeout: (callback, delayMs) => systemClock.setTimeout(callback, delayMs), clearTimeout: (handle) => systemClock.clearTimeout(handle), advance: (ms) => void (nowMs += ms) };
}

describe('per-tenant rate limits', () => {
  let db: TestDatabase;
  const keys = async (...args: string[]) => {
    const { code, stdout, stderr } = await runScript('keys', args, { DATABASE_URL: db.url });
    assert.equal(code, 0, `npm run keys -- ${args.join(' ')}: ${stderr}`);
    return stdout.trimEnd().split('\n');
  };
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  const post = (service: TestService, key: string, url: '/event' | '/events', payload: unknown) =>
    service.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}` }, payload: payload as Record<string, unknown> });
  const events = (tenant: string, count: number) => Array.from({ length: count }, () => sampleEvent({ tenant }));

  it('429 with the refill time past the limit, 413 past the burst, quiet tenants unaffected, overrides picked up at run time', async () => {
    const noisyKey = (await keys('create', '--tenant', 'noisy')).at(-1)!;
    const quietKey = (await keys('create', '--tenant', 'quiet')).at(-1)!;
    const clock = steppedClock(Date.now());
    const service = await buildTestService(
      db.url,
      { AUTH: 'on', TENANT_RATE_LIMIT: '5', TENANT_RATE_BURST: '5', TENANT_BYTE_RATE_LIMIT: '60000', TENANT_BYTE_BURST: '60000', TENANT_LIMITS_POLL_MS: '100' },
      { clock },
    );
    try {
      for (let i = 0; i < 5; i += 1) assert.equal((await post(service, noisyKey, '/event', sampleEvent({ tenant: 'noisy' }))).statusCode, 202);
      const limited = await post(service, noisyKey, '/event', sampleEvent({ tenant: 'noisy' }));
      assert.equal(limited.statusCode, 429, limited.body);
      assert.equal(limited.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal(limited.json<{ code: string }>().code, 'INGEST_ERR_TENANT_RATE_LIMITED');
      assert.equal(limited.headers['retry-after'], '1', 'one event refills in 0.2 s at 5/s: 1 s, rounded up');
      const bulkLimited = await post(service, noisyKey, '/events', events('noisy', 2));
      assert.equal(bulkLimited.json<{ code: string }>().code, 'INGEST_ERR_TENANT_RATE_LIMITED', 'a bulk with no token left is refused at the gate');

      for (let i = 0; i < 5; i += 1) assert.equal((await post(service, quietKey, '/event', sampleEvent({ tenant: 'quiet' }))).statusCode, 202, 'the quiet tenant has its own bucket');

      clock.advance(1000); // five tokens again
      const tooMany = await post(service, noisyKey, '/events', events('noisy', 6));
      assert.equal(tooMany.statusCode, 413, tooMany.body);
      assert.equal(tooMany.json<{ code: string }>().code, 'INGEST_ERR_TENANT_BURST_EXCEEDED', 'more events than the burst: never an endless 429');
      assert.equal((await post(service, noisyKey, '/events', events('noisy', 3))).statusCode, 202, 'a bulk within its tokens passes');
      const overRate = await post(service, noisyKey, '/events', events('noisy', 3));
      assert.equal(overRate.statusCode, 429, '3 more than the 2 left');
      assert.equal(overRate.headers['retry-after'], '1');

      const tooLarge = await post(service, quietKey, '/event', sampleEvent({ tenant: 'quiet', metadata: { padding: 'x'.repeat(61_000) } }));
      assert.equal(tooLarge.statusCode, 413);
      assert.equal(tooLarge.json<{ code: string }>().code, 'INGEST_ERR_TENANT_BURST_EXCEEDED', 'a body larger than the byte burst, by Content-Length');

      const metrics = await service.app.inject({ method: 'GET', url: '/metrics' });
      assert.match(metrics.body, /ingest_shed_total\{reason="tenant_rate_limited"\} 3/);

      // Run-time override: a burst of 200 lets a 100-event bulk past the 413 once it is read.
      await keys('limit', '--tenant', 'noisy', '--rate', '100', '--burst', '200');
      assert.match((await keys('limits')).join('\n'), /^noisy\t100\t200\t-\t-$/m);
      // Each probe is a second later (so the byte bucket is full again); what it gets accepted is counted.
      let noisyStored = 5 + 3;
      const probe = async () => {
        clock.advance(1000);
        const { statusCode } = await post(service, noisyKey, '/events', events('noisy', 100));
        if (statusCode === 202) noisyStored += 100;
        return statusCode;
      };
      await waitFor(async () => (await probe()) !== 413, 5000, 'the override to be picked up');
      clock.advance(2000); // 200 tokens at 100/s
      assert.equal((await post(service, noisyKey, '/events', events('noisy', 100))).statusCode, 202);
      noisyStored += 100;
      assert.equal((await post(service, quietKey, '/events', events('quiet', 6))).statusCode, 413, "the quiet tenant keeps the default burst");

      await keys('limit', '--tenant', 'noisy', '--clear');
      await waitFor(async () => (await probe()) === 413, 5000, 'the cleared override to be dropped');
      await waitFor(async () => (await db.count("tenant = 'noisy'")) === noisyStored, 10_000, 'the accepted noisy events');
      assert.equal(await db.count("tenant = 'quiet'"), 5);
    } finally {
      await service.close();
    }
  });

  it('limits off (the default): no refusal however fast a tenant sends, no poller', async () => {
    const key = (await keys('create', '--tenant', 'unlimited')).at(-1)!;
    const service = await buildTestService(db.url, { AUTH: 'on' });
    try {
      assert.equal(service.limitOverrides, undefined);
      for (let i = 0; i < 20; i += 1) assert.equal((await post(service, key, '/event', sampleEvent({ tenant: 'unlimited' }))).statusCode, 202);
      assert.equal((await post(service, key, '/events', events('unlimited', 500))).statusCode, 202);
      await waitFor(async () => (await db.count("tenant = 'unlimited'")) === 520, 10_000, 'every event stored');
    } finally {
      await service.close();
    }
  });

  it('refuses TENANT_RATE_LIMIT with AUTH=off at start: the tenant is known before the body only from the key', async () => {
    await assert.rejects(buildTestService(db.url, { AUTH: 'off', TENANT_RATE_LIMIT: '5' }), /AUTH=on/);
  });
});
