/**
 * ops/prometheus: the alert rules read only metrics the service really exposes (from the real
 * registry, not a list kept by hand), each alert links to a runbook.md section that exists, and,
 * where promtool is installed, Prometheus itself accepts the rules and their unit tests pass.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { checkExpression, exposedSeriesNames, headingAnchors, histogramBuckets, parsePromQL } from '../helpers/metric-names.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const prometheusDirectory = path.join(root, 'ops/prometheus');
const alertsFile = path.join(prometheusDirectory, 'alerts.yml');

const ruleSchema = z
  .object({
    alert: z.string().min(1).optional(),
    record: z.string().min(1).optional(),
    expr: z.string().min(1),
    for: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .strict()
  .refine((rule) => (rule.alert === undefined) !== (rule.record === undefined), 'a rule is an alert or a record, not both');
const ruleFileSchema = z.object({ groups: z.array(z.object({ name: z.string().min(1), rules: z.array(ruleSchema).min(1) }).strict()).min(1) }).strict();
type Rule = z.infer<typeof ruleSchema>;

async function loadRules(): Promise<Rule[]> {
  const parsed = ruleFileSchema.parse(parse(await readFile(alertsFile, 'utf8')) as unknown);
  return parsed.groups.flatMap((group) => group.rules);
}

/** The alerts the "Operations" issue asks for, and a metric each must read to mean what it says. */
const REQUIRED_ALERTS: Record<string, string> = {
  IngestInstanceDown: 'up',
  IngestSheddingSustained: 'ingest_shed_total',
  IngestBreakerOpen: 'ingest_breaker_state',
  IngestBatchLatencySLOFastBurn: 'ingest_batch_latency_seconds_bucket',
  IngestBatchLatencySLOSlowBurn: 'ingest_batch_latency_seconds_bucket',
  IngestDeadLetterQueueGrowing: 'ingest_events_dead_lettered_total',
  IngestDeadLetterQueueUnwritable: 'ingest_dlq_write_errors_total',
  IngestEventsFailed: 'ingest_events_failed_total',
  IngestNoFlushesWhileEventsArrive: 'ingest_flushes_total',
  IngestEventsSpilledAtShutdown: 'ingest_events_dropped_total',
  IngestApiLatencyHigh: 'ingest_http_request_duration_seconds_bucket',
  IngestBacklogTooOld: 'ingest_oldest_unsettled_event_age_seconds',
};

/** The text of each "## " section of a markdown file, by its heading's anchor. */
function sectionsByAnchor(markdown: string): Map<string, string> {
  const sections = new Map<string, string>();
  const parts = markdown.split(/^(?=## )/m);
  for (const part of parts) {
    if (!part.startsWith('## ')) continue;
    const [anchor] = headingAnchors(part);
    if (anchor !== undefined) sections.set(anchor, part);
  }
  return sections;
}

/** Metric names an expression reads, following recording rules to what they read. */
function metricsRead(expression: string, recorded: ReadonlyMap<string, string>, seen = new Set<string>()): Set<string> {
  const names = new Set<string>();
  for (const { metric } of parsePromQL(expression).selectors) {
    const definition = recorded.get(metric);
    if (definition !== undefined && !seen.has(metric)) {
      seen.add(metric);
      for (const inner of metricsRead(definition, recorded, seen)) names.add(inner);
    } else {
      names.add(metric);
    }
  }
  return names;
}

function recordingRules(rules: readonly Rule[]): Map<string, string> {
  return new Map(rules.filter((rule) => rule.record !== undefined).map((rule) => [rule.record!, rule.expr]));
}

/** promtool's path, or undefined (the subtest is skipped with a message) when it is not installed. */
function findPromtool(t: TestContext): string | undefined {
  const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    // .ci/run sets this once it has installed promtool: there, a missing one is a failure.
    assert.notEqual(process.env.INGEST_REQUIRE_PROMTOOL, '1', 'INGEST_REQUIRE_PROMTOOL=1 but promtool is not on PATH');
    t.skip('promtool is not on PATH (Debian: apt-get install prometheus); Prometheus\'s own check did not run');
    return undefined;
  }
  return 'promtool';
}

describe('ops/prometheus/alerts.yml', () => {
  it('parses, and has every required alert reading the metric it is about', async () => {
    const rules = await loadRules();
    const recorded = recordingRules(rules);
    const alerts = new Map(rules.filter((rule) => rule.alert !== undefined).map((rule) => [rule.alert!, rule]));
    assert.equal(alerts.size, rules.filter((rule) => rule.alert !== undefined).length, 'alert names are unique');
    for (const [name, metric] of Object.entries(REQUIRED_ALERTS)) {
      const rule = alerts.get(name);
      assert.ok(rule, `alert ${name} is missing`);
      assert.ok(metricsRead(rule.expr, recorded).has(metric), `${name} does not read ${metric}`);
    }
  });

  it('every expression selects only metrics and labels the service exposes', async () => {
    const rules = await loadRules();
    const exposed = await exposedSeriesNames();
    const recorded = new Set(recordingRules(rules).keys());
    const problems = rules.flatMap((rule) => checkExpression(rule.alert ?? rule.record!, rule.expr, exposed, recorded));
    assert.deepEqual(problems, []);
  });

  it('a mistyped metric or label would be caught (the check is not vacuous)', async () => {
    const exposed = await exposedSeriesNames();
    assert.equal(checkExpression('typo', 'rate(ingest_events_faild_total[5m]) > 0', exposed).length, 1);
    assert.equal(checkExpression('label', 'ingest_http_responses_total{status_code="429"}', exposed).length, 1);
    assert.equal(checkExpression('bare histogram', 'ingest_batch_latency_seconds > 1', exposed).length, 1);
    assert.equal(checkExpression('in a string', 'up{job="ingest_not_a_metric"}', exposed).length, 0);
  });

  it('the SLO threshold (1 s) is a bucket boundary of ingest_batch_latency_seconds, and the SLO rules read that bucket', async () => {
    const buckets = await histogramBuckets('ingest_batch_latency_seconds');
    assert.ok(buckets.includes(1), `buckets: ${buckets.join(', ')}`);
    const rules = await loadRules();
    const sloRecords = rules.filter((rule) => rule.record?.startsWith('ingest:batch_latency_slow_ratio:'));
    assert.ok(sloRecords.length >= 4, 'one recording rule per burn-rate window');
    for (const rule of sloRecords) {
      // le="1" as prom-client writes it, le="1.0" as Prometheus 3 normalises it.
      assert.match(rule.expr, /ingest_batch_latency_seconds_bucket\{le=~"1\(\\\\\.0\)\?"\}/, rule.record);
      assert.match(rule.expr, /ingest_batch_latency_seconds_count/, rule.record);
    }
  });

  it('every alert has a severity, a summary, a description and a runbook_url', async () => {
    for (const rule of (await loadRules()).filter((candidate) => candidate.alert !== undefined)) {
      assert.match(rule.labels?.severity ?? '', /^(critical|warning)$/, `${rule.alert}: severity`);
      for (const key of ['summary', 'description', 'runbook_url']) {
        assert.ok((rule.annotations?.[key] ?? '').trim().length > 0, `${rule.alert}: annotations.${key}`);
      }
    }
  });

  it('every runbook_url is <runbook_base external label>/runbook.md#<a "## " heading that names the alert>', async () => {
    const runbook = await readFile(path.join(root, 'runbook.md'), 'utf8');
    const anchors = headingAnchors(runbook);
    assert.ok(anchors.has('database-down--breaker-open'), 'anchor rules: "/" dropped, spaces kept as "-"');
    const sections = sectionsByAnchor(runbook);
    const broken: string[] = [];
    for (const rule of (await loadRules()).filter((candidate) => candidate.alert !== undefined)) {
      const url = rule.annotations?.runbook_url ?? '';
      // One place sets where the runbook lives: the runbook_base external label (prometheus.yml).
      const match = /^\{\{ \$externalLabels\.runbook_base \}\}\/runbook\.md#([a-z0-9_-]+)$/.exec(url);
      if (match === null) broken.push(`${rule.alert}: ${url} is not {{ $externalLabels.runbook_base }}/runbook.md#<anchor>`);
      else if (!anchors.has(match[1]!)) broken.push(`${rule.alert}: runbook.md has no heading with anchor #${match[1]!}`);
      else if (!sections.get(match[1]!)!.includes(`\`${rule.alert!}\``)) broken.push(`${rule.alert}: section #${match[1]!} does not name the alert`);
    }
    assert.deepEqual(broken, [], `headings: ${[...anchors].join(', ')}`);
  });

  it('prometheus.yml sets the runbook_base external label, and the compose stack lets RUNBOOK_BASE set it', async () => {
    const config = z
      .object({ global: z.object({ external_labels: z.record(z.string(), z.string()) }).passthrough() })
      .passthrough()
      .parse(parse(await readFile(path.join(prometheusDirectory, 'prometheus.yml'), 'utf8')) as unknown);
    const base = config.global.external_labels.runbook_base;
    assert.equal(base, '${RUNBOOK_BASE}');
    const compose = z
      .object({ services: z.object({ prometheus: z.object({ command: z.array(z.string()), environment: z.record(z.string(), z.string()) }).passthrough() }).passthrough() })
      .parse(parse(await readFile(path.join(root, 'docker-compose.yml'), 'utf8')) as unknown);
    assert.ok(compose.services.prometheus.command.includes('--enable-feature=expand-external-labels'), 'Prometheus expands ${RUNBOOK_BASE}');
    assert.match(compose.services.prometheus.environment.RUNBOOK_BASE ?? '', /^\$\{RUNBOOK_BASE:-https?:\/\/\S+\}$/);
  });

  it('prometheus.yml scrapes the service as job "audit-ingest" and loads alerts.yml', async () => {
    const config = z
      .object({
        rule_files: z.array(z.string()),
        scrape_configs: z.array(z.object({ job_name: z.string(), static_configs: z.array(z.object({ targets: z.array(z.string()) })).optional() })),
      })
      .parse(parse(await readFile(path.join(prometheusDirectory, 'prometheus.yml'), 'utf8')) as unknown);
    assert.ok(config.rule_files.includes('alerts.yml'));
    const job = config.scrape_configs.find((scrape) => scrape.job_name === 'audit-ingest');
    assert.ok(job, 'a scrape job named audit-ingest (alerts.yml and the dashboard filter on it)');
    const rules = await loadRules();
    assert.ok(rules.some((rule) => rule.expr.includes('up{job="audit-ingest"}')), 'IngestInstanceDown watches that job');
  });

  it('promtool check rules accepts alerts.yml', (t) => {
    const promtool = findPromtool(t);
    if (promtool === undefined) return;
    const result = spawnSync(promtool, ['check', 'rules', alertsFile], { encoding: 'utf8' });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
  });

  it('promtool check config accepts prometheus.yml', (t) => {
    const promtool = findPromtool(t);
    if (promtool === undefined) return;
    const result = spawnSync(promtool, ['check', 'config', 'prometheus.yml'], { cwd: prometheusDirectory, encoding: 'utf8' });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
  });

  it('promtool test rules: the alerts fire (and stay quiet) as alerts.test.yml expects', (t) => {
    const promtool = findPromtool(t);
    if (promtool === undefined) return;
    const result = spawnSync(promtool, ['test', 'rules', 'alerts.test.yml'], { cwd: prometheusDirectory, encoding: 'utf8' });
    assert.equal(result.status, 0, `${result.stdout}\n${result.stderr}`);
  });

  it('alerts.test.yml covers at least the breaker-open and events-failed alerts', async () => {
    const tests = z
      .object({ tests: z.array(z.object({ alert_rule_test: z.array(z.object({ alertname: z.string(), exp_alerts: z.array(z.unknown()) })).optional() })) })
      .parse(parse(await readFile(path.join(prometheusDirectory, 'alerts.test.yml'), 'utf8')) as unknown);
    const firing = new Set(
      tests.tests.flatMap((test) => (test.alert_rule_test ?? []).filter((check) => check.exp_alerts.length > 0).map((check) => check.alertname)),
    );
    for (const name of ['IngestBreakerOpen', 'IngestEventsFailed', 'IngestApiLatencyHigh', 'IngestBacklogTooOld']) {
      assert.ok(firing.has(name), `${name} is tested to fire`);
    }
  });
});
