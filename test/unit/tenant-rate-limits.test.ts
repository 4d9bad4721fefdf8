import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TenantRateLimiter } from '../../src/limits/tenant-rate-limiter.ts';
import { TokenBucket } from '../../src/limits/token-bucket.ts';
import { OverridePoller } from '../../src/limits/override-poller.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';

describe('TokenBucket', () => {
  it('starts full, refills at its rate up to its burst, and says when a refused charge would fit', () => {
    const bucket = new TokenBucket({ rate: 10, burst: 20 }, 0);
    assert.deepEqual(bucket.take(15, 0), { ok: true });
    assert.equal(bucket.available(0), 5);
    const refused = bucket.take(10, 0);
    assert.ok(!refused.ok && !refused.tooLarge);
    assert.equal(refused.retryAfterMs, 500, '5 tokens missing at 10/s');
    assert.equal(bucket.available(0), 5, 'a refusal takes nothing');
    assert.deepEqual(bucket.take(10, 500), { ok: true }, 'fits once the refill time has passed');
    assert.equal(bucket.available(10_000), 20, 'never more than the burst');
  });

  it('refuses a charge larger than the burst as too large, whatever it holds', () => {
    const bucket = new TokenBucket({ rate: 100, burst: 50 }, 0);
    const refused = bucket.check(51, 1_000_000);
    assert.ok(!refused.ok && refused.tooLarge);
    assert.deepEqual(bucket.check(50, 0), { ok: true });
  });

  it('an unlimited bucket (rate Infinity) admits anything and holds no debt', () => {
    const bucket = new TokenBucket({ rate: Infinity, burst: Infinity }, 0);
    for (let i = 0; i < 3; i += 1) assert.deepEqual(bucket.take(1e12, 0), { ok: true });
  });

  it('a new limit keeps the tokens held, capped at the new burst', () => {
    const bucket = new TokenBucket({ rate: 10, burst: 100 }, 0);
    bucket.take(40, 0);
    bucket.setLimit({ rate: 1, burst: 30 }, 0);
    assert.equal(bucket.available(0), 30);
    bucket.setLimit({ rate: 1, burst: 1000 }, 0);
    assert.equal(bucket.available(0), 30, 'a larger burst does not hand out tokens');
    assert.equal(bucket.available(2000), 32, 'refills at the new rate');
  });
});

describe('TenantRateLimiter', () => {
  const defaults = { events: { rate: 10, burst: 10 }, bytes: { rate: 1000, burst: 2000 } };

  it('charges POST /event one event and its Content-Length; 429 with the refill time past the limit', () => {
    const clock = createFakeClock(0);
    const limiter = new TenantRateLimiter({ clock, defaults });
    for (let i = 0; i < 10; i += 1) assert.equal(limiter.admitRequest('acme', 1, 100), undefined);
    const refused = limiter.admitRequest('acme', 1, 100);
    assert.equal(refused?.code, 'INGEST_ERR_TENANT_RATE_LIMITED');
    assert.equal(refused?.retryAfterSeconds, 1, '0.1 s to refill one event, rounded up to a whole second');
    assert.equal(limiter.admitRequest('globex', 1, 100), undefined, 'another tenant has its own buckets');
  });

  it('a bulk is checked for one token at the gate and charged its count after parsing', () => {
    const clock = createFakeClock(0);
    const limiter = new TenantRateLimiter({ clock, defaults });
    assert.equal(limiter.admitRequest('acme', 0, 10), undefined);
    assert.equal(limiter.chargeEvents('acme', 8), undefined);
    const over = limiter.chargeEvents('acme', 5);
    assert.equal(over?.code, 'INGEST_ERR_TENANT_RATE_LIMITED');
    assert.equal(over?.retryAfterSeconds, 1, '3 events missing at 10/s: 0.3 s');
    assert.equal(limiter.chargeEvents('acme', 11)?.code, 'INGEST_ERR_TENANT_BURST_EXCEEDED', 'more events than the burst: 413');
    assert.equal(limiter.chargeEvents('acme', 2), undefined);
    assert.equal(limiter.admitRequest('acme', 0, 10)?.code, 'INGEST_ERR_TENANT_RATE_LIMITED', 'no token left: refused before the body');
  });

  it('a bulk is checked at the gate for the events its Content-Length suggests, from the tenant\'s last counted bulk', async () => {
    const clock = createFakeClock(0);
    const limiter = new TenantRateLimiter({ clock, defaults: { events: { rate: 1, burst: 100 }, bytes: { rate: Infinity, burst: Infinity } } });
    const head = { bytes: 33_000, encoded: false };
    assert.equal(limiter.admitRequest('acme', 0, head.bytes), undefined, 'nothing counted yet: one token is enough');
    assert.equal(limiter.chargeEvents('acme', 100, head), undefined);
    await clock.tickAsync(5000); // 5 tokens
    // Before: one token let every bulk past the gate, to be parsed and refused by its count.
    const refused = limiter.admitRequest('acme', 0, head.bytes);
    assert.equal(refused?.code, 'INGEST_ERR_TENANT_RATE_LIMITED', '330 bytes an event: about 100 events, 5 tokens');
    assert.equal(refused?.retryAfterSeconds, 95, 'the refill time of the 95 missing');
    assert.equal(limiter.admitRequest('acme', 0, 1_650), undefined, 'a bulk of about 5 events fits');
    assert.equal(limiter.admitRequest('acme', 0, 1_650, true), undefined, 'an encoded body has no estimate of its own yet: one token');
    assert.equal(limiter.admitRequest('acme', 0, undefined)?.code, 'INGEST_ERR_TENANT_RATE_LIMITED', 'chunked: the last bulk\'s count');
    assert.equal(limiter.admitRequest('acme', 0, 10_000_000)?.code, 'INGEST_ERR_TENANT_RATE_LIMITED', 'an estimate past the burst is capped at it: 429, never 413 on a guess');
    await clock.tickAsync(95_000);
    assert.equal(limiter.admitRequest('acme', 0, 10_000_000), undefined, 'a full bucket lets any bulk be counted');
    assert.equal(limiter.chargeEvents('acme', 101, { bytes: 10_000_000, encoded: false })?.code, 'INGEST_ERR_TENANT_BURST_EXCEEDED');
    assert.equal(limiter.admitRequest('acme', 0, 33_000), undefined, 'the 413 taught the estimate: ~99,000 bytes an event now');
  });

  it('bytes: a body larger than the byte burst is 413; past the byte rate, 429 with its refill time', () => {
    const clock = createFakeClock(0);
    const limiter = new TenantRateLimiter({ clock, defaults: { events: { rate: Infinity, burst: Infinity }, bytes: { rate: 1000, burst: 2000 } } });
    assert.equal(limiter.admitRequest('acme', 1, 2001)?.code, 'INGEST_ERR_TENANT_BURST_EXCEEDED');
    assert.equal(limiter.admitRequest('acme', 1, 1500), undefined);
    const refused = limiter.admitRequest('acme', 1, 1500);
    assert.equal(refused?.code, 'INGEST_ERR_TENANT_RATE_LIMITED');
    assert.equal(refused?.retryAfterSeconds, 1, '1000 bytes missing at 1000 B/s');
    assert.equal(limiter.admitRequest('acme', 1, undefined), undefined, 'chunked (no Content-Length) is not charged bytes');
  });

  it('overrides apply to existing buckets, fall back to the defaults where null, and go away when cleared', () => {
    const clock = createFakeClock(0);
    const limiter = new TenantRateLimiter({ clock, defaults });
    limiter.admitRequest('acme', 1, 1);
    limiter.setOverrides([{ tenant: 'acme', rate: 500, burst: 1000, byteRate: null, byteBurst: null }]);
    assert.deepEqual(limiter.limitsOf('acme'), { events: { rate: 500, burst: 1000 }, bytes: defaults.bytes });
    limiter.setOverrides([{ tenant: 'acme', rate: 50, burst: null, byteRate: null, byteBurst: null }]);
    assert.deepEqual(limiter.limitsOf('acme').events, { rate: 50, burst: 50 }, 'a rate without a burst: one second of it');
    limiter.setOverrides([]);
    assert.deepEqual(limiter.limitsOf('acme'), defaults);
    assert.equal(limiter.chargeEvents('acme', 11)?.code, 'INGEST_ERR_TENANT_BURST_EXCEEDED', 'the existing bucket is back on the default burst');
  });
});

describe('OverridePoller', () => {
  it('reads at start and every interval on the injected clock; a failed read keeps the last overrides', async () => {
    const clock = createFakeClock(0);
    const reads: (() => Promise<never[]>)[] = [() => Promise.resolve([]), () => Promise.reject(new Error('down')), () => Promise.resolve([])];
    let applied = 0;
    const warnings: unknown[] = [];
    const poller = new OverridePoller({
      clock,
      intervalMs: 1000,
      logger: { info: () => {}, warn: (...args: unknown[]) => void warnings.push(args) } as never,
      read: () => (reads.shift() ?? (() => Promise.resolve([])))(),
      apply: () => void (applied += 1),
    });
    await poller.start();
    assert.equal(applied, 1);
    await clock.tickAsync(999);
    assert.equal(applied, 1, 'not before the interval');
    await clock.tickAsync(1);
    assert.equal(applied, 1, 'the failed read applies nothing');
    assert.equal(warnings.length, 1);
    await clock.tickAsync(1000);
    assert.equal(applied, 2);
    poller.stop();
    await clock.tickAsync(5000);
    assert.equal(applied, 2, 'stopped');
  });
});
