/**
 * src/telemetry/metrics.ts: what a scrape of a freshly created registry shows. A labelled series
 * that only appears at its first increment makes a panel say "No data" after every restart and
 * `rate()` miss that first increment, so every known label value must be there, at 0, from the start.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMetrics } from '../../src/telemetry/metrics.ts';

/** `name{labels} value` lines of the text exposition, keyed by `name{labels}`. */
function samples(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    map.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return map;
}

const ZERO_SERIES = [
  ...['size', 'bytes', 'time', 'shutdown', 'partitions', 'natural'].map((reason) => `ingest_flushes_total{reason="${reason}"}`),
  ...['increase_size', 'increase_wait', 'decrease_latency', 'decrease_congestion', 'hold'].map((reason) => `ingest_batch_window_decisions_total{reason="${reason}"}`),
  ...['spilled', 'left_in_wal'].map((reason) => `ingest_events_dropped_total{reason="${reason}"}`),
  ...['overloaded', 'queue_full', 'draining', 'tenant_over_share'].map((reason) => `ingest_shed_total{reason="${reason}"}`),
  ...['open', 'half_open', 'closed'].map((to) => `ingest_breaker_transitions_total{to="${to}"}`),
  ...['success', 'failure'].map((result) => `ingest_database_probes_total{result="${result}"}`),
  ...['write', 'corrupt'].map((reason) => `ingest_audit_checkpoint_outbox_failures_total{reason="${reason}"}`),
  ...['/event', '/events'].flatMap((route) =>
    ['201', '202', '400', '401', '413', '429', '503'].map((status) => `ingest_http_responses_total{route="${route}",status="${status}"}`),
  ),
  ...['/event', '/events'].flatMap((route) =>
    ['2xx', '4xx', '5xx'].map((statusClass) => `ingest_http_request_duration_seconds_count{route="${route}",status_class="${statusClass}"}`),
  ),
];

describe('createMetrics(): a fresh registry', () => {
  it('exposes every known label value of every labelled counter at 0', async () => {
    const scraped = samples(await createMetrics().registry.metrics());
    const missing = ZERO_SERIES.filter((series) => scraped.get(series) !== 0);
    assert.deepEqual(missing, [], 'series absent (or not 0) in a fresh scrape');
  });

  it('every labelled ingest_ counter and histogram has at least one series before anything happened', async () => {
    const { registry } = createMetrics();
    const empty: string[] = [];
    for (const metric of await registry.getMetricsAsJSON()) {
      const labelNames = (registry.getSingleMetric(metric.name) as { labelNames?: string[] } | undefined)?.labelNames ?? [];
      if (!metric.name.startsWith('ingest_') || labelNames.length === 0 || !['counter', 'histogram'].includes(String(metric.type))) continue;
      if (metric.values.length === 0) empty.push(metric.name);
    }
    assert.deepEqual(empty, []);
  });

  it('every metric has help text', async () => {
    const { registry } = createMetrics();
    const withoutHelp = (await registry.getMetricsAsJSON()).filter((metric) => metric.help.trim().length < 10).map((metric) => metric.name);
    assert.deepEqual(withoutHelp, []);
  });

  it('has the API-latency histogram (ms-level buckets) and the oldest-unsettled-event gauge', async () => {
    const metrics = createMetrics();
    const text = await metrics.registry.metrics();
    assert.match(text, /^# HELP ingest_http_request_duration_seconds \S/m);
    assert.match(text, /^# TYPE ingest_http_request_duration_seconds histogram$/m);
    assert.match(text, /^ingest_http_request_duration_seconds_bucket\{le="0\.001",route="\/event",status_class="2xx"\} 0$/m, 'a 1 ms bucket');
    assert.match(text, /^# HELP ingest_oldest_unsettled_event_age_seconds \S/m);
    assert.match(text, /^ingest_oldest_unsettled_event_age_seconds 0$/m, 'no source, nothing waiting: 0');
  });

  it('the oldest-unsettled age is read from its source at scrape time, 0 when nothing waits', async () => {
    const metrics = createMetrics();
    let nowMs = 1_000_000;
    let oldest: number | undefined = nowMs - 90_500;
    metrics.setOldestUnsettledSource(() => oldest, { now: () => nowMs });
    const age = async () => samples(await metrics.registry.metrics()).get('ingest_oldest_unsettled_event_age_seconds');
    assert.equal(await age(), 90.5);
    nowMs += 10_000;
    assert.equal(await age(), 100.5);
    oldest = undefined;
    assert.equal(await age(), 0);
  });

  it('batch-latency buckets reach past 30 s, to 10 minutes, and keep the 1 s SLO boundary', async () => {
    const { registry } = createMetrics();
    const values = (await registry.getSingleMetric('ingest_batch_latency_seconds')!.get()).values;
    const bounds = values.map((value) => value.labels.le).filter((le): le is number => typeof le === 'number');
    assert.ok(bounds.includes(1));
    assert.ok(bounds.includes(60) && bounds.includes(300) && bounds.includes(600), `buckets: ${bounds.join(', ')}`);
  });
});
