/**
 * What the service really exposes on /metrics, and what a PromQL expression asks for: the two
 * halves of the contract between src/telemetry/metrics.ts and ops/ (alerts, dashboards).
 *
 * Names come from the real registry (createMetrics(), default metrics included), not from a list
 * kept by hand. Expressions are parsed with Prometheus's own PromQL grammar (lezer-promql, the
 * one the Prometheus UI uses), so a name inside a string, a label matcher or a `by (…)` clause
 * is never mistaken for a metric.
 */
import { parser } from '@prometheus-io/lezer-promql';
import type { Registry } from 'prom-client';
import { createMetrics } from '../../src/telemetry/metrics.ts';

export interface ExposedMetric {
  /** The metric as registered (for a histogram: without the _bucket/_sum/_count suffix). */
  readonly family: string;
  readonly type: string;
  /** Labels a selector may match on: the metric's own, plus what a scrape attaches. */
  readonly labels: ReadonlySet<string>;
}

/** Labels Prometheus attaches to every scraped series (target labels from prometheus.yml). */
export const TARGET_LABELS: readonly string[] = ['job', 'instance'];

/** Series Prometheus makes itself for each scrape target. */
const SYNTHETIC: Record<string, readonly string[]> = { up: [] };

/**
 * Every series name the service exposes, mapped to its family. A classic histogram has no series
 * under its own name, only `_bucket` (with `le`), `_sum` and `_count`; a summary has its quantiles
 * under its own name (with `quantile`) plus `_sum` and `_count`.
 */
export async function exposedSeriesNames(): Promise<ReadonlyMap<string, ExposedMetric>> {
  const { registry } = createMetrics();
  return seriesNamesOf(registry);
}

export async function seriesNamesOf(registry: Registry): Promise<ReadonlyMap<string, ExposedMetric>> {
  const names = new Map<string, ExposedMetric>();
  for (const metric of await registry.getMetricsAsJSON()) {
    const own = labelNamesOf(registry, metric.name);
    const base = [...own, ...TARGET_LABELS];
    const type = String(metric.type);
    if (type === 'histogram') {
      names.set(`${metric.name}_bucket`, { family: metric.name, type, labels: new Set([...base, 'le']) });
      names.set(`${metric.name}_sum`, { family: metric.name, type, labels: new Set(base) });
      names.set(`${metric.name}_count`, { family: metric.name, type, labels: new Set(base) });
    } else if (type === 'summary') {
      names.set(metric.name, { family: metric.name, type, labels: new Set([...base, 'quantile']) });
      names.set(`${metric.name}_sum`, { family: metric.name, type, labels: new Set(base) });
      names.set(`${metric.name}_count`, { family: metric.name, type, labels: new Set(base) });
    } else {
      names.set(metric.name, { family: metric.name, type, labels: new Set(base) });
    }
  }
  for (const [name, labels] of Object.entries(SYNTHETIC)) {
    names.set(name, { family: name, type: 'synthetic', labels: new Set([...labels, ...TARGET_LABELS]) });
  }
  return names;
}

function labelNamesOf(registry: Registry, name: string): readonly string[] {
  // prom-client keeps the configured labelNames on the metric object; its typings do not say so.
  const metric = registry.getSingleMetric(name) as { labelNames?: readonly string[] } | undefined;
  return metric?.labelNames ?? [];
}

/** Bucket boundaries (`le`, as numbers; +Inf excluded) of a histogram in the real registry. */
export async function histogramBuckets(family: string): Promise<readonly number[]> {
  const { registry } = createMetrics();
  const histogram = registry.getSingleMetric(family);
  if (histogram === undefined) return [];
  const json = await histogram.get();
  return json.values
    .map((value) => value.labels.le)
    .filter((le): le is number => typeof le === 'number' && Number.isFinite(le));
}

export interface SelectorUse {
  readonly metric: string;
  /** Label names matched in the selector's braces, e.g. `reason` in `x{reason="spilled"}`. */
  readonly labels: readonly string[];
  /** The selector as written, for messages. */
  readonly text: string;
}

export interface ParsedExpression {
  readonly selectors: readonly SelectorUse[];
  /** Parse errors, as `offset: text around it`; empty for a valid expression. */
  readonly errors: readonly string[];
}

/**
 * Every metric a PromQL expression selects. `{__name__="x"}` selectors count too. Grafana macros
 * (`$__rate_interval`, `$__interval`, `$__range`) must be replaced before calling this; see
 * `expandGrafanaMacros`.
 */
export function parsePromQL(expression: string): ParsedExpression {
  const tree = parser.parse(expression);
  const selectors: SelectorUse[] = [];
  const errors: string[] = [];
  const text = (from: number, to: number) => expression.slice(from, to);
  tree.iterate({
    enter(node) {
      if (node.type.isError) {
        errors.push(`${node.from}: …${text(Math.max(0, node.from - 20), node.to + 20)}…`);
        return;
      }
      if (node.name !== 'VectorSelector') return;
      let metric: string | undefined;
      const labels: string[] = [];
      const cursor = node.node.cursor();
      if (cursor.firstChild()) {
        do {
          if (cursor.name === 'Identifier') metric = text(cursor.from, cursor.to);
          if (cursor.name === 'LabelMatchers') {
            for (const matcher of cursor.node.getChildren('UnquotedLabelMatcher')) {
              const labelName = matcher.getChild('LabelName');
              const value = matcher.getChild('StringLiteral');
              if (labelName === null) continue;
              const name = text(labelName.from, labelName.to);
              if (name === '__name__' && value !== null) metric = unquote(text(value.from, value.to));
              else labels.push(name);
            }
            for (const matcher of cursor.node.getChildren('QuotedLabelMatcher')) {
              const quoted = matcher.getChild('QuotedLabelName');
              if (quoted !== null) labels.push(unquote(text(quoted.from, quoted.to)));
            }
            for (const quotedName of cursor.node.getChildren('QuotedLabelName')) {
              metric = unquote(text(quotedName.from, quotedName.to));
            }
          }
        } while (cursor.nextSibling());
      }
      if (metric !== undefined) selectors.push({ metric, labels, text: text(node.from, node.to) });
      else errors.push(`${node.from}: selector without a metric name: ${text(node.from, node.to)}`);
    },
  });
  return { selectors, errors };
}

function unquote(literal: string): string {
  return literal.replace(/^["'`]|["'`]$/g, '');
}

/** Grafana's interval macros, replaced by a duration so the expression is plain PromQL. */
export function expandGrafanaMacros(expression: string): string {
  return expression
    .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m')
    .replace(/\$__(range_s|interval_ms|range_ms)\b/g, '300');
}

export interface NameProblem {
  readonly where: string;
  readonly problem: string;
}

/**
 * Check one expression against the exposed names: every selected metric must be exposed (or
 * defined by a recording rule in `recorded`), and every label it matches on must be one the
 * metric has. Returns the problems, empty when the expression is sound.
 */
export function checkExpression(
  where: string,
  expression: string,
  exposed: ReadonlyMap<string, ExposedMetric>,
  recorded: ReadonlySet<string> = new Set(),
): NameProblem[] {
  const { selectors, errors } = parsePromQL(expression);
  const problems: NameProblem[] = errors.map((error) => ({ where, problem: `does not parse as PromQL at ${error}` }));
  for (const selector of selectors) {
    if (recorded.has(selector.metric)) continue;
    const metric = exposed.get(selector.metric);
    if (metric === undefined) {
      problems.push({ where, problem: `${selector.metric} is not exposed by the service (in ${selector.text})` });
      continue;
    }
    for (const label of selector.labels) {
      if (!metric.labels.has(label)) {
        problems.push({
          where,
          problem: `${selector.metric} has no label "${label}" (it has: ${[...metric.labels].join(', ')}) in ${selector.text}`,
        });
      }
    }
  }
  if (selectors.length === 0 && errors.length === 0 && !/^\s*(vector|scalar)\(/.test(expression)) {
    problems.push({ where, problem: 'selects no metric at all' });
  }
  return problems;
}

/**
 * GitHub's heading anchors: lowercase; drop every character that is not a letter, digit, space,
 * '-' or '_'; spaces become '-'. A repeated heading gets '-1', '-2', … appended.
 * "Database down / breaker open" → "database-down--breaker-open".
 */
export function headingAnchors(markdown: string, level = 2): ReadonlySet<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  const prefix = `${'#'.repeat(level)} `;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced || !line.startsWith(prefix)) continue;
    const base = githubAnchor(line.slice(prefix.length));
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

export function githubAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}
