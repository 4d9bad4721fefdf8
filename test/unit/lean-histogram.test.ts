import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { BatchedHistogram } from '../../src/telemetry/batched-histogram.ts';

const BUCKETS = [0.005, 0.01, 0.1, 1, 10];

describe('BatchedHistogram', () => {
  it('exposes exactly what a prom-client Histogram exposes for the same observations', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1_000_000 }), fc.array(fc.integer({ min: 0, max: 20_000 }), { maxLength: 60 }), async (nowMs, agesMs) => {
        const ours = new Registry();
        const theirs = new Registry();
        const batched = new BatchedHistogram({ name: 'latency_seconds', help: 'h', buckets: BUCKETS, registers: [ours] });
        const reference = new Histogram({ name: 'latency_seconds', help: 'h', buckets: BUCKETS, registers: [theirs] });
        const startsMs = agesMs.map((age) => nowMs - age);
        batched.observeElapsedSince(nowMs, startsMs);
        for (const startMs of startsMs) reference.observe((nowMs - startMs) / 1000);
        assert.equal(await ours.metrics(), await theirs.metrics());
        assert.deepEqual(await ours.getSingleMetric('latency_seconds')!.get(), await theirs.getSingleMetric('latency_seconds')!.get());
      }),
      { numRuns: 200 },
    );
  });

  it('a value on a bucket boundary counts in that bucket (le), and reset empties every bucket', async () => {
    const registry = new Registry();
    const histogram = new BatchedHistogram({ name: 'boundary_seconds', help: 'h', buckets: BUCKETS, registers: [registry] });
    histogram.observe(0.1);
    histogram.observe(11);
    const text = await registry.metrics();
    assert.match(text, /^boundary_seconds_bucket\{le="0.01"\} 0$/m);
    assert.match(text, /^boundary_seconds_bucket\{le="0.1"\} 1$/m);
    assert.match(text, /^boundary_seconds_bucket\{le="10"\} 1$/m);
    assert.match(text, /^boundary_seconds_bucket\{le="\+Inf"\} 2$/m);
    assert.match(text, /^boundary_seconds_count 2$/m);
    registry.resetMetrics();
    assert.match(await registry.metrics(), /^boundary_seconds_count 0$/m);
  });
});
