/**
 * Just enough of the Prometheus text format to read the service's /metrics: samples by name and
 * labels, histogram buckets, differences between two scrapes, and quantiles estimated from
 * buckets the way histogram_quantile() does (linear within the bucket).
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export type Scrape = readonly Sample[];

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(LABEL)) labels[label[1]!] = label[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

export async function scrape(url: string): Promise<Scrape> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return parseMetrics(await response.text());
}

/** Sum of the samples named `name` whose labels include `where`. */
export function value(scrape: Scrape, name: string, where: Record<string, string> = {}): number {
  let sum = 0;
  for (const sample of scrape) {
    if (sample.name !== name) continue;
    if (Object.entries(where).every(([key, wanted]) => sample.labels[key] === wanted)) sum += sample.value;
  }
  return sum;
}

/** Values of `label` on the samples named `name`, summed per label value. */
export function byLabel(scrape: Scrape, name: string, label: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const sample of scrape) {
    const key = sample.labels[label];
    if (sample.name !== name || key === undefined) continue;
    result.set(key, (result.get(key) ?? 0) + sample.value);
  }
  return result;
}

export interface Histogram {
  /** Cumulative counts per upper bound, ascending, +Inf last. */
  readonly buckets: readonly { le: number; count: number }[];
  readonly count: number;
  readonly sum: number;
}

export function histogram(scrape: Scrape, name: string): Histogram {
  const buckets = [...byLabel(scrape, `${name}_bucket`, 'le')]
    .map(([le, count]) => ({ le: le === '+Inf' ? Infinity : Number(le), count }))
    .sort((a, b) => a.le - b.le);
  return { buckets, count: value(scrape, `${name}_count`), sum: value(scrape, `${name}_sum`) };
}

/** What was observed between two scrapes of the same process. */
export function histogramDelta(after: Histogram, before: Histogram): Histogram {
  const previous = new Map(before.buckets.map((bucket) => [bucket.le, bucket.count]));
  return {
    buckets: after.buckets.map((bucket) => ({ le: bucket.le, count: bucket.count - (previous.get(bucket.le) ?? 0) })),
    count: after.count - before.count,
    sum: after.sum - before.sum,
  };
}

/** The q-quantile (0..1), interpolated linearly within its bucket; undefined when empty. */
export function quantile(h: Histogram, q: number): number | undefined {
  const total = h.buckets.at(-1)?.count ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const bucket of h.buckets) {
    if (bucket.count >= rank) {
      if (bucket.le === Infinity) return lowerBound; // beyond the last finite bound: a lower bound only
      const inBucket = bucket.count - lowerCount;
      return inBucket <= 0 ? bucket.le : lowerBound + ((bucket.le - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = bucket.le;
    lowerCount = bucket.count;
  }
  return lowerBound;
}

/** Non-cumulative counts: "≤1: 3, ≤500: 120, …" with empty buckets left out. */
export function describeBuckets(h: Histogram): string {
  const parts: string[] = [];
  let previous = 0;
  let lowerBound = 0;
  for (const bucket of h.buckets) {
    const count = bucket.count - previous;
    if (count > 0) {
      const label = bucket.le === Infinity ? `>${lowerBound}` : `≤${bucket.le}`;
      parts.push(`${label}: ${count}`);
    }
    previous = bucket.count;
    lowerBound = bucket.le;
  }
  return parts.join(', ') || '—';
}
