/**
 * ops/grafana: the dashboard parses, every query on it (panels, annotations, template variables)
 * selects only metrics and labels the service really exposes, it has the panels the "Operations"
 * issue asks for, and the provisioning files and docker-compose.yml agree on where things are.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { checkExpression, expandGrafanaMacros, exposedSeriesNames, parsePromQL } from '../helpers/metric-names.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const grafanaDirectory = path.join(root, 'ops/grafana');
const dashboardsDirectory = path.join(grafanaDirectory, 'dashboards');

const datasourceRef = z.object({ type: z.string().optional(), uid: z.string() }).passthrough();
const targetSchema = z.object({ expr: z.string().min(1), refId: z.string(), datasource: datasourceRef.optional() }).passthrough();
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: z.infer<typeof datasourceRef> | undefined;
  targets?: z.infer<typeof targetSchema>[] | undefined;
  panels?: Panel[] | undefined;
  fieldConfig?: unknown;
}
const panelSchema: z.ZodType<Panel> = z.lazy(() =>
  z
    .object({
      id: z.number().int(),
      type: z.string(),
      title: z.string().min(1),
      gridPos: z.object({ x: z.number(), y: z.number(), w: z.number(), h: z.number() }),
      datasource: datasourceRef.optional(),
      targets: z.array(targetSchema).optional(),
      panels: z.array(panelSchema).optional(),
      fieldConfig: z.unknown().optional(),
    })
    .passthrough(),
);
const variableSchema = z
  .object({
    name: z.string(),
    type: z.string(),
    query: z.union([z.string(), z.object({ query: z.string() }).passthrough()]).optional(),
    datasource: datasourceRef.optional(),
  })
  .passthrough();
const dashboardSchema = z
  .object({
    uid: z.string().min(1),
    title: z.string().min(1),
    schemaVersion: z.number().int(),
    panels: z.array(panelSchema).min(1),
    templating: z.object({ list: z.array(variableSchema) }),
    annotations: z.object({ list: z.array(z.object({ expr: z.string().optional(), datasource: datasourceRef.optional() }).passthrough()) }),
  })
  .passthrough();
type Dashboard = z.infer<typeof dashboardSchema>;

const DATASOURCE_UID = '${DS_PROMETHEUS}';

async function dashboardFiles(): Promise<string[]> {
  return (await readdir(dashboardsDirectory)).filter((name) => name.endsWith('.json')).map((name) => path.join(dashboardsDirectory, name));
}

async function loadDashboard(file: string): Promise<Dashboard> {
  return dashboardSchema.parse(JSON.parse(await readFile(file, 'utf8')) as unknown);
}

/** Every panel, rows' nested (collapsed) panels included, rows themselves excluded. */
function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((panel) => [...(panel.type === 'row' ? [] : [panel]), ...allPanels(panel.panels ?? [])]);
}

interface Query {
  readonly where: string;
  readonly expr: string;
}

/** Every PromQL expression on the dashboard: panel targets, annotations, query variables. */
function queriesOf(dashboard: Dashboard): Query[] {
  const queries: Query[] = [];
  for (const panel of allPanels(dashboard.panels)) {
    for (const target of panel.targets ?? []) queries.push({ where: `panel "${panel.title}" ${target.refId}`, expr: target.expr });
  }
  for (const annotation of dashboard.annotations.list) {
    if (annotation.expr !== undefined) queries.push({ where: `annotation ${String(annotation.name)}`, expr: annotation.expr });
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query' || variable.query === undefined) continue;
    const text = typeof variable.query === 'string' ? variable.query : variable.query.query;
    // label_values(selector, label) and query_result(expr) wrap PromQL; label_values(label) has none.
    const wrapped = /^\s*(?:label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)|query_result\((.*)\))\s*$/s.exec(text);
    const inner = wrapped?.[1] ?? wrapped?.[2];
    if (inner !== undefined) queries.push({ where: `variable $${variable.name}`, expr: inner });
  }
  return queries;
}

describe('ops/grafana dashboards', () => {
  it('there is a dashboard, it parses, schemaVersion ≥ 36, unique uid and panel ids, panels inside the 24-column grid', async () => {
    const files = await dashboardFiles();
    assert.ok(files.length >= 1, 'ops/grafana/dashboards/*.json');
    const uids = new Set<string>();
    for (const file of files) {
      const dashboard = await loadDashboard(file);
      assert.ok(dashboard.schemaVersion >= 36, `${file}: schemaVersion ${dashboard.schemaVersion}`);
      assert.ok(!uids.has(dashboard.uid), `duplicate uid ${dashboard.uid}`);
      uids.add(dashboard.uid);
      const ids = new Set<number>();
      const walk = (panels: readonly Panel[]) => {
        for (const panel of panels) {
          assert.ok(!ids.has(panel.id), `duplicate panel id ${panel.id}`);
          ids.add(panel.id);
          assert.ok(panel.gridPos.x >= 0 && panel.gridPos.w > 0 && panel.gridPos.x + panel.gridPos.w <= 24, `"${panel.title}" leaves the grid`);
          walk(panel.panels ?? []);
        }
      };
      walk(dashboard.panels);
    }
  });

  it('every panel and query reads from the ${DS_PROMETHEUS} data-source variable', async () => {
    for (const file of await dashboardFiles()) {
      const dashboard = await loadDashboard(file);
      const variable = dashboard.templating.list.find((candidate) => candidate.name === 'DS_PROMETHEUS');
      assert.equal(variable?.type, 'datasource');
      assert.equal(variable?.query, 'prometheus');
      for (const panel of allPanels(dashboard.panels)) {
        assert.equal(panel.datasource?.uid, DATASOURCE_UID, `panel "${panel.title}"`);
        for (const target of panel.targets ?? []) assert.equal(target.datasource?.uid ?? DATASOURCE_UID, DATASOURCE_UID, `panel "${panel.title}"`);
      }
      for (const candidate of dashboard.templating.list.filter((entry) => entry.type === 'query')) {
        assert.equal(candidate.datasource?.uid, DATASOURCE_UID, `variable ${candidate.name}`);
      }
    }
  });

  it('every query selects only metrics and labels the service exposes, and uses only defined variables', async () => {
    const exposed = await exposedSeriesNames();
    for (const file of await dashboardFiles()) {
      const dashboard = await loadDashboard(file);
      const variables = new Set(dashboard.templating.list.map((variable) => variable.name));
      const queries = queriesOf(dashboard);
      assert.ok(queries.length >= 20, `${queries.length} queries found`);
      const problems = queries.flatMap((query) => checkExpression(query.where, expandGrafanaMacros(query.expr), exposed));
      for (const query of queries) {
        for (const match of query.expr.matchAll(/\$\{?(\w+)/g)) {
          const name = match[1]!;
          if (!name.startsWith('__') && !variables.has(name)) problems.push({ where: query.where, problem: `undefined variable $${name}` });
        }
      }
      assert.deepEqual(problems, [], path.basename(file));
    }
  });

  it('has the panels the Operations issue asks for', async () => {
    const dashboard = await loadDashboard(path.join(dashboardsDirectory, 'audit-ingest.json'));
    const panels = allPanels(dashboard.panels);
    const metricsOf = (panel: Panel) =>
      new Set((panel.targets ?? []).flatMap((target) => parsePromQL(expandGrafanaMacros(target.expr)).selectors.map((selector) => selector.metric)));
    /** A panel reading all of these metrics together. */
    const panelReading = (...metrics: string[]) => panels.find((panel) => metrics.every((metric) => metricsOf(panel).has(metric)));
    const required: Record<string, string[]> = {
      throughput: ['ingest_events_accepted_total', 'ingest_events_stored_total'],
      '429/503 rate': ['ingest_shed_total', 'ingest_http_responses_total'],
      'queue depth vs threshold': ['ingest_queue_depth', 'ingest_queue_capacity'],
      'batch size distribution': ['ingest_batch_size_bucket'],
      'batch latency': ['ingest_batch_latency_seconds_bucket'],
      'flush reasons': ['ingest_flushes_total'],
      'failures and retries': ['ingest_events_failed_total', 'ingest_retries_total'],
      breaker: ['ingest_breaker_state'],
      'DLQ growth': ['ingest_events_dead_lettered_total', 'ingest_dlq_write_errors_total'],
      'event-loop lag': ['nodejs_eventloop_lag_p99_seconds'],
      pool: ['ingest_db_pool_connections', 'ingest_db_pool_waiting'],
      'per-tenant queue depth': ['ingest_tenant_queue_depth'],
      'API latency': ['ingest_http_request_duration_seconds_bucket'],
      'backlog age': ['ingest_oldest_unsettled_event_age_seconds'],
    };
    const missing = Object.entries(required).filter(([, metrics]) => panelReading(...metrics) === undefined);
    assert.deepEqual(missing, []);

    const queue = panels.find(
      (panel) => metricsOf(panel).has('ingest_queue_depth') && panel.targets?.some((target) => /^\s*0\.8\s*\*.*ingest_queue_capacity/.test(target.expr)),
    );
    assert.ok(queue, 'queue depth drawn against a 0.8 × ingest_queue_capacity line');
    const shed = panelReading('ingest_shed_total', 'ingest_http_responses_total')!;
    assert.ok(shed.targets!.some((target) => /by \(reason\)/.test(target.expr) && target.expr.includes('ingest_shed_total')), 'shed by reason');
    assert.ok(shed.targets!.some((target) => /by \(status\)/.test(target.expr) && target.expr.includes('ingest_http_responses_total')), 'responses by status');

    const latency = panels.find((panel) => panel.targets?.some((target) => /histogram_quantile\(0\.99,.*ingest_batch_latency_seconds_bucket/.test(target.expr)));
    assert.ok(latency, 'a p99 batch-latency panel');
    assert.ok(latency.targets!.some((target) => /histogram_quantile\(0\.5,.*ingest_batch_latency_seconds_bucket/.test(target.expr)), 'and p50');
    const fieldConfig = z
      .object({
        defaults: z.object({
          thresholds: z.object({ steps: z.array(z.object({ value: z.number().nullable() }).passthrough()) }),
          custom: z.object({ thresholdsStyle: z.object({ mode: z.string() }) }).passthrough(),
        }).passthrough(),
      })
      .passthrough()
      .parse(latency.fieldConfig);
    assert.ok(fieldConfig.defaults.thresholds.steps.some((step) => step.value === 1), 'the SLO (1 s) as a threshold');
    assert.notEqual(fieldConfig.defaults.custom.thresholdsStyle.mode, 'off', 'drawn as a line');

    const api = panelReading('ingest_http_request_duration_seconds_bucket')!;
    assert.ok(
      api.targets!.some((target) => /histogram_quantile\(0\.99,.*by \(le, route\)/.test(target.expr)),
      'API latency p99 per route',
    );

    const heatmap = panels.find((panel) => panel.type === 'heatmap' && metricsOf(panel).has('ingest_batch_size_bucket'));
    assert.ok(heatmap, 'the batch size distribution is a heatmap');
    assert.equal(heatmap.targets![0]!.format, 'heatmap');
  });

  it('provisioning: the datasource, the dashboard provider and docker-compose.yml agree', async () => {
    const datasources = z
      .object({ apiVersion: z.number(), datasources: z.array(z.object({ name: z.string(), type: z.string(), uid: z.string(), url: z.string() }).passthrough()) })
      .parse(parse(await readFile(path.join(grafanaDirectory, 'provisioning/datasources/prometheus.yml'), 'utf8')) as unknown);
    const prometheus = datasources.datasources.find((source) => source.type === 'prometheus');
    assert.ok(prometheus, 'a prometheus datasource');
    assert.equal(prometheus.url, 'http://prometheus:9090', 'the compose service name');

    const providers = z
      .object({ apiVersion: z.number(), providers: z.array(z.object({ type: z.literal('file'), options: z.object({ path: z.string() }) }).passthrough()) })
      .parse(parse(await readFile(path.join(grafanaDirectory, 'provisioning/dashboards/dashboards.yml'), 'utf8')) as unknown);
    const dashboardPath = providers.providers[0]!.options.path;

    const compose = z
      .object({ services: z.record(z.string(), z.object({ volumes: z.array(z.string()).optional() }).passthrough()) })
      .parse(parse(await readFile(path.join(root, 'docker-compose.yml'), 'utf8')) as unknown);
    const grafanaVolumes = compose.services.grafana?.volumes ?? [];
    assert.ok(
      grafanaVolumes.some((volume) => volume.startsWith('./ops/grafana/dashboards:') && volume.split(':')[1] === dashboardPath),
      `grafana mounts ops/grafana/dashboards at ${dashboardPath}: ${grafanaVolumes.join(', ')}`,
    );
    assert.ok(grafanaVolumes.some((volume) => volume.startsWith('./ops/grafana/provisioning:/etc/grafana/provisioning')), 'grafana mounts the provisioning directory');
    assert.ok((compose.services.prometheus?.volumes ?? []).some((volume) => volume.startsWith('./ops/prometheus:')), 'prometheus mounts ops/prometheus');
  });
});
