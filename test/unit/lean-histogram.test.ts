import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Histogram, Registry } from 'prom-client';
import { LeanHistogram } from '../../src/telemetry/lean-histogram.ts';

const BUCKETS = [0.005, 0.01, 0.1, 1, 10];
const ROUTES = ['/event', '/events'];
const CLASSES = ['2xx', '4xx', '5xx'];

describe('LeanHistogram', () => {
  it('without labels, a batch observed at once exposes exactly what a prom-client Histogram exposes for the same values', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1_000_000 }), fc.array(fc.integer({ min: 0, max: 20_000 }), { maxLength: 60 }), async (nowMs, agesMs) => {
        const ours = new Registry();
        const theirs = new Registry();
        const lean = new LeanHistogram({ name: 'latency_seconds', help: 'h', buckets: BUCKETS, registers: [ours] });
        const reference = new Histogram({ name: 'latency_seconds', help: 'h', buckets: BUCKETS, registers: [theirs] });
        const startsMs = agesMs.map((age) => nowMs - age);
        lean.observeElapsedSince(nowMs, startsMs);
        for (const startMs of startsMs) reference.observe((nowMs - startMs) / 1000);
        assert.equal(await ours.metrics(), await theirs.metrics());
        assert.deepEqual(await ours.getSingleMetric('latency_seconds')!.get(), await theirs.getSingleMetric('latency_seconds')!.get());
      }),
      { numRuns: 200 },
    );
  });

  it('with labels, zeroed and observed label sets expose exactly what a prom-client Histogram exposes', async () => {
    const observation = fc.record({ route: fc.constantFrom(...ROUTES), status_class: fc.constantFrom(...CLASSES), seconds: fc.double({ min: 0, max: 30, noNaN: true }) });
    await fc.assert(
      fc.asyncProperty(fc.array(observation, { maxLength: 40 }), async (observations) => {
        const ours = new Registry();
        const theirs = new Registry();
        const options = { name: 'request_seconds', help: 'h', buckets: BUCKETS, labelNames: ['route', 'status_class'] as const };
        const lean = new LeanHistogram({ ...options, registers: [ours] });
        const reference = new Histogram({ ...options, registers: [theirs] });
        lean.zero({ route: '/event', status_class: '2xx' });
        reference.zero({ route: '/event', status_class: '2xx' });
        for (const { route, status_class, seconds } of observations) {
          lean.labels({ route, status_class }).observe(seconds);
          reference.labels({ route, status_class }).observe(seconds);
        }
        assert.equal(await ours.metrics(), await theirs.metrics());
        assert.deepEqual(await ours.getSingleMetric('request_seconds')!.get(), await theirs.getSingleMetric('request_seconds')!.get());
      }),
      { numRuns: 200 },
    );
  });

  it('a value on a bucket boundary counts in that bucket (le); reset brings every label set back to zero and children keep working', async () => {
    const registry = new Registry();
    const histogram = new LeanHistogram({ name: 'boundary_seconds', help: 'h', buckets: BUCKETS, labelNames: ['route'], registers: [registry] });
    const child = histogram.labels({ route: '/event' });
    child.observe(0.1);
    child.observe(11);
    const text = await registry.metrics();
    assert.match(text, /^boundary_seconds_bucket\{le="0.01",route="\/event"\} 0$/m);
    assert.match(text, /^boundary_seconds_bucket\{le="0.1",route="\/event"\} 1$/m);
    assert.match(text, /^boundary_seconds_bucket\{le="\+Inf",route="\/event"\} 2$/m);
    registry.resetMetrics();
    assert.match(await registry.metrics(), /^boundary_seconds_count\{route="\/event"\} 0$/m);
    child.observe(0.5);
    assert.match(await registry.metrics(), /^boundary_seconds_count\{route="\/event"\} 1$/m);
    assert.throws(() => histogram.observe(1), /has labels/);
  });
});
