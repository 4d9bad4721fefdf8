import type { Metric, Registry } from 'prom-client';

/** One exposed sample, as prom-client's own metrics return them from get(). */
interface Sample {
  readonly metricName: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  /** As prom-client sets it: null on bucket samples (no exemplars), undefined on _sum and _count. */
  readonly exemplar: null | undefined;
}

/** One label set's buckets. */
export class LeanHistogramChild {
  readonly labels: Readonly<Record<string, string>>;
  readonly #upperBounds: readonly number[];
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  counts: number[];
  sum = 0;
  count = 0;

  constructor(upperBounds: readonly number[], labels: Readonly<Record<string, string>>) {
    this.#upperBounds = upperBounds;
    this.labels = labels;
    this.counts = new Array<number>(upperBounds.length + 1).fill(0);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#upperBounds;
    let bucket = 0;
    while (bucket < bounds.length && value > bounds[bucket]!) bucket += 1;
    this.counts[bucket]! += 1;
    this.sum += value;
    this.count += 1;
  }

  /** Observe `nowMs - startMs` seconds for every start time (the events of one batch). */
  observeElapsedSince(nowMs: number, startsMs: readonly number[]): void {
    for (let index = 0; index < startsMs.length; index += 1) this.observe((nowMs - startsMs[index]!) / 1000);
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/**
 * A Prometheus histogram that is cheap to observe, one value or a whole batch at a time.
 *
 * prom-client's Histogram builds a closure, a label object and a label hash, and validates the
 * labels, on every `observe`. The accepted → committed latency is observed for every event (500
 * per batch) and the request duration for every request: together ~2 % of the service's CPU under
 * load. Here a child per label set is looked up once and keeps plain counters. It is registered
 * with prom-client's registry and exposes exactly what a prom-client Histogram does (`_bucket{le}`
 * cumulative, `+Inf`, `_sum`, `_count`, label sets in the order they were first used), so
 * scrapes, recording rules and `getSingleMetric(name).get()` see no difference
 * (test/unit/lean-histogram.test.ts compares the two). Written by hand because prom-client has no
 * batched or pre-bound observe.
 */
export class LeanHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #upperBounds: readonly number[];
  /** Its label names, public as on prom-client's metrics (tools read them off the registry). */
  readonly labelNames: readonly string[];
  readonly #children = new Map<string, LeanHistogramChild>();
  /** The child without labels (a histogram with no label names). */
  readonly #unlabelled: LeanHistogramChild | undefined;

  constructor(options: { name: string; help: string; buckets: readonly number[]; labelNames?: readonly string[]; registers: readonly Registry[] }) {
    this.name = options.name;
    this.help = options.help;
    this.#upperBounds = [...options.buckets].sort((a, b) => a - b);
    this.labelNames = options.labelNames ?? [];
    if (this.labelNames.length === 0) this.#unlabelled = this.labels({});
    // The registry keeps any object with a name, get() and reset(): this is one, not a prom-client class.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  /** The child for these label values (created at zero the first time): keep it, and observe on it. */
  labels(labels: Readonly<Record<string, string>>): LeanHistogramChild {
    const key = this.labelNames.map((name) => labels[name] ?? '').join('\u0000');
    let child = this.#children.get(key);
    if (!child) {
      const own: Record<string, string> = {};
      for (const name of this.labelNames) {
        const value = labels[name];
        if (value === undefined) throw new Error(`${this.name}: label "${name}" is missing`);
        own[name] = value;
      }
      child = new LeanHistogramChild(this.#upperBounds, own);
      this.#children.set(key, child);
    }
    return child;
  }

  /** Expose this label set at zero before its first observation. */
  zero(labels: Readonly<Record<string, string>>): void {
    this.labels(labels);
  }

  /** Histograms without labels only. */
  observe(value: number): void {
    this.#requireUnlabelled().observe(value);
  }

  /** Histograms without labels only: see LeanHistogramChild.observeElapsedSince. */
  observeElapsedSince(nowMs: number, startsMs: readonly number[]): void {
    this.#requireUnlabelled().observeElapsedSince(nowMs, startsMs);
  }

  #requireUnlabelled(): LeanHistogramChild {
    if (!this.#unlabelled) throw new Error(`${this.name} has labels: observe on labels(…)`);
    return this.#unlabelled;
  }

  get(): Promise<{ name: string; help: string; type: 'histogram'; values: Sample[]; aggregator: 'sum' }> {
    const values: Sample[] = [];
    for (const child of this.#children.values()) {
      let cumulative = 0;
      for (const [index, bound] of this.#upperBounds.entries()) {
        cumulative += child.counts[index]!;
        values.push({ value: cumulative, metricName: `${this.name}_bucket`, exemplar: null, labels: { le: bound, ...child.labels } });
      }
      values.push({ value: child.count, metricName: `${this.name}_bucket`, exemplar: null, labels: { le: '+Inf', ...child.labels } });
      values.push({ value: child.sum, metricName: `${this.name}_sum`, exemplar: undefined, labels: { ...child.labels } });
      values.push({ value: child.count, metricName: `${this.name}_count`, exemplar: undefined, labels: { ...child.labels } });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  /** Every label set back at zero (kept: callers hold their children). */
  reset(): void {
    for (const child of this.#children.values()) child.reset();
  }
}
