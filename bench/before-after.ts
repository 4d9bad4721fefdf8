/**
 * `npm run bench:before-after [-- --duration=S] [--trickle=R] [--fault-every=N]`
 *
 * The batching seed's engineering loop as one table, every row under the same two loads: a full
 * closed-loop load (64 connections: throughput, commits / round trips / fsyncs per event) and a
 * steady open-loop trickle (--trickle events/s: end-to-end p99, accepted → committed). Rows:
 *   naive per event   bench/servers/naive.ts: one autocommit INSERT per event, 201 after it commits
 *   size only         the service with BATCH_MAX_WAIT_MS=10000 (the timer out of the way), plain write path
 *   size + time       the service's 500 / 200 ms window, plain write path (no retry)
 *   + retry           the service as it is (retry, breaker, poison isolation, dead-letter queue)
 *   + adaptive        the same with BATCH_WINDOW=adaptive (when the config knows it)
 * In every service row 1 batch write in --fault-every fails before reaching the database with a
 * transient error (bench/servers/write-path.ts): without retry those events fail; with it they are
 * stored. Writes report.md, results.json and the figures to bench/results/<time>-before-after/.
 */
import path from 'node:path';
import { createModeDatabase, type ModeDatabase } from './lib/database.ts';
import { BENCH_DIR, SERVER_STOP_GRACE_MS, TSX, progress, runLoadProcess, startHttpServer, type BenchOptions, type Context, type HttpServer } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { writeFigure, type Datum } from './lib/plot.ts';
import { stopChild } from './lib/processes.ts';
import { histogram, histogramDelta, quantile } from './lib/prometheus.ts';
import { perEventText } from './lib/report.ts';
import { countedFullLoad, delta, fmt, measureServiceRun, ms, runScenario } from './lib/scenario.ts';
import { measureDatabase, perEvent, withCpu } from './lib/harness.ts';

interface Row {
  readonly id: string;
  readonly label: string;
  /** For the figure's axis. */
  readonly short: string;
  /** undefined: the naive server. */
  readonly env?: Record<string, string>;
}

const ROWS: readonly Row[] = [
  { id: 'naive', label: 'naive: INSERT + commit per event', short: 'naive' },
  // The timer out of the way (10 s), not off: the last partial batch of each run must still leave before the drain's deadline.
  { id: 'size-only', label: 'size only (500; timer at 10 s)', short: 'size only', env: { BENCH_WRITE_PATH: 'plain', BATCH_MAX_WAIT_MS: '10000' } },
  { id: 'size-time', label: 'size + time (500 / 200 ms), no retry', short: 'size + time', env: { BENCH_WRITE_PATH: 'plain' } },
  { id: 'retry', label: 'size + time + retry (the service)', short: '+ retry', env: { BENCH_WRITE_PATH: 'service' } },
  { id: 'adaptive', label: 'adaptive window + retry', short: 'adaptive + retry', env: { BENCH_WRITE_PATH: 'service', BATCH_WINDOW: 'adaptive' } },
];

interface Result {
  readonly row: Row;
  readonly pending?: string;
  readonly fullEventsPerSecond?: number;
  readonly fullHttpP99Ms?: number;
  readonly commitsPerEvent?: number;
  readonly roundTripsPerEvent?: number;
  readonly fsyncsPerEvent?: number;
  readonly meanBatch?: number;
  readonly failedEvents?: number;
  readonly retries?: number;
  readonly trickleHttpP99Ms?: number;
  readonly trickleEndToEndP99Ms?: number;
  readonly trickleEndToEndP50Ms?: number;
  readonly trickleCommitsPerEvent?: number;
  /** Mean batch size and mean flush duration (ingest_flush_duration_seconds) at full load and at the trickle. */
  readonly flushFit?: { fullSize: number; fullMs: number; trickleSize: number; trickleMs: number };
}

/** The fixed part of a flush: the intercept of flush duration = fixed + per-event × size through the two loads. */
function fixedCostMs(fit: NonNullable<Result['flushFit']>): { fixedMs: number; perEventUs: number } | undefined {
  if (!(fit.fullSize > fit.trickleSize)) return undefined;
  const perEventMs = (fit.fullMs - fit.trickleMs) / (fit.fullSize - fit.trickleSize);
  return { fixedMs: fit.trickleMs - perEventMs * fit.trickleSize, perEventUs: perEventMs * 1000 };
}

function startRow(ctx: Context, db: ModeDatabase, row: Row, faultEvery: number): Promise<HttpServer> {
  if (!row.env) return startHttpServer(ctx, row.id, [...TSX, path.join(BENCH_DIR, 'servers', 'naive.ts')], { DATABASE_URL: db.url });
  return startHttpServer(ctx, row.id, [...TSX, path.join(BENCH_DIR, 'servers', 'write-path.ts')], {
    DATABASE_URL: db.url,
    LOG_LEVEL: 'warn',
    DATA_DIR: path.join(ctx.runDir, `${row.id}-data`),
    AUTH: 'off',
    METRICS_PORT: '',
    METRICS_ON_PUBLIC_LISTENER: 'true',
    BENCH_FAULT_EVERY: String(faultEvery),
    ...row.env,
  });
}

async function runNaiveRow(ctx: Context, db: ModeDatabase, server: HttpServer, row: Row, trickle: number): Promise<Result> {
  const url = `${server.baseUrl}/event`;
  const measured = await countedFullLoad(ctx, `${row.id}-full`, { url, connections: ctx.options.connections, durationSeconds: ctx.options.durationSeconds });
  const { result, before, after } = await measureDatabase(ctx, db, () => withCpu(ctx, server, async () => ({ load: await runLoadProcess(ctx, `${row.id}-full`, measured) })));
  const costs = perEvent(ctx, before, after, result.load.ok2xx, result.load.ok2xx);
  const slow = await measureDatabase(ctx, db, () =>
    runLoadProcess(ctx, `${row.id}-trickle`, { url, connections: 16, durationSeconds: ctx.options.durationSeconds, overallRate: trickle, rateGenerator: 'paced', warmupSeconds: 1 }),
  );
  return {
    row,
    fullEventsPerSecond: result.load.ok2xx / result.load.durationSeconds,
    fullHttpP99Ms: result.load.latency.p99,
    commitsPerEvent: costs.commits,
    roundTripsPerEvent: costs.roundTrips,
    // One PostgreSQL WAL flush per commit (synchronous_commit=on).
    fsyncsPerEvent: costs.commits,
    meanBatch: 1,
    failedEvents: result.load.non2xx,
    retries: 0,
    // 201 after the commit: the HTTP latency is the end-to-end latency.
    trickleHttpP99Ms: slow.result.latency.p99,
    trickleEndToEndP99Ms: slow.result.latency.p99,
    trickleEndToEndP50Ms: slow.result.latency.p50,
    trickleCommitsPerEvent: (slow.after.nextXid - slow.before.nextXid) / Math.max(1, slow.result.ok2xx),
  };
}

async function runServiceRow(ctx: Context, db: ModeDatabase, server: HttpServer, row: Row, trickle: number): Promise<Result> {
  const url = `${server.baseUrl}/event`;
  const measured = await countedFullLoad(ctx, `${row.id}-full`, { url, connections: ctx.options.connections, durationSeconds: ctx.options.durationSeconds });
  const full = await measureServiceRun(ctx, db, server, `${row.id}-full`, measured);
  const fsyncs = delta(full.after, full.before, 'ingest_wal_fsync_duration_seconds_count');
  const sizes = histogramDelta(histogram(full.after, 'ingest_batch_size'), histogram(full.before, 'ingest_batch_size'));
  const slow = await measureServiceRun(ctx, db, server, `${row.id}-trickle`, {
    url,
    connections: 16,
    durationSeconds: ctx.options.durationSeconds,
    overallRate: trickle,
    rateGenerator: 'paced',
    warmupSeconds: 1,
  });
  const latency = histogramDelta(histogram(slow.after, 'ingest_batch_latency_seconds'), histogram(slow.before, 'ingest_batch_latency_seconds'));
  const failed = (run: typeof full) => delta(run.after, run.before, 'ingest_events_failed_total');
  const flushMeanMs = (run: typeof full) =>
    (delta(run.after, run.before, 'ingest_flush_duration_seconds_sum') / Math.max(1, delta(run.after, run.before, 'ingest_flush_duration_seconds_count'))) * 1000;
  const slowSizes = histogramDelta(histogram(slow.after, 'ingest_batch_size'), histogram(slow.before, 'ingest_batch_size'));
  const stored = full.stored;
  return {
    row,
    fullEventsPerSecond: full.load.ok2xx / full.load.durationSeconds,
    fullHttpP99Ms: full.load.latency.p99,
    commitsPerEvent: full.perEvent.commits,
    roundTripsPerEvent: full.perEvent.roundTrips,
    // WAL group fsyncs plus PostgreSQL's one WAL flush per commit.
    fsyncsPerEvent: stored > 0 ? fsyncs / stored + full.perEvent.commits : undefined,
    meanBatch: sizes.count > 0 ? sizes.sum / sizes.count : undefined,
    failedEvents: failed(full) + failed(slow),
    retries: delta(full.after, full.before, 'ingest_retries_total') + delta(slow.after, slow.before, 'ingest_retries_total'),
    trickleHttpP99Ms: slow.load.latency.p99,
    trickleEndToEndP99Ms: (quantile(latency, 0.99) ?? NaN) * 1000,
    trickleEndToEndP50Ms: (quantile(latency, 0.5) ?? NaN) * 1000,
    trickleCommitsPerEvent: slow.perEvent.commits,
    flushFit: {
      fullSize: sizes.count > 0 ? sizes.sum / sizes.count : 0,
      fullMs: flushMeanMs(full),
      trickleSize: slowSizes.count > 0 ? slowSizes.sum / slowSizes.count : 0,
      trickleMs: flushMeanMs(slow),
    },
  };
}

async function runRow(ctx: Context, row: Row, trickle: number, faultEvery: number): Promise<Result> {
  const db = await createModeDatabase(ctx.server, row.id.replace(/-/g, '_'));
  let server: HttpServer;
  try {
    server = await startRow(ctx, db, row, faultEvery);
  } catch (error) {
    // BATCH_WINDOW=adaptive before the config knows it: the service exits 2 at start.
    progress(`${row.label}: did not start (${String(error)})`);
    return { row, pending: `did not start: see ${row.id}.log` };
  }
  try {
    return row.env ? await runServiceRow(ctx, db, server, row, trickle) : await runNaiveRow(ctx, db, server, row, trickle);
  } finally {
    await stopChild(server.child, SERVER_STOP_GRACE_MS);
  }
}

async function figures(ctx: Context, results: readonly Result[]): Promise<string[]> {
  const order = results.map((r) => r.row.short);
  const data: Datum[] = results
    .filter((r) => !r.pending)
    .flatMap((r) => [
      { row: r.row.short, metric: 'full load: events/s', value: r.fullEventsPerSecond ?? null },
      { row: r.row.short, metric: 'commits per 1,000 events', value: r.commitsPerEvent === undefined ? null : r.commitsPerEvent * 1000 },
      { row: r.row.short, metric: 'trickle: end-to-end p99 ms', value: r.trickleEndToEndP99Ms ?? null },
    ]);
  const written = await writeFigure(ctx.runDir, {
    name: 'before-after',
    title: 'Before / after: throughput, fixed cost, latency (log scales)',
    data,
    spec: {
      facet: { column: { field: 'metric', type: 'nominal', title: null } },
      resolve: { scale: { y: 'independent' } },
      spec: {
        width: 220,
        height: 240,
        // Points, not bars: a bar on a log scale has no base.
        mark: { type: 'point', filled: true, size: 160 },
        encoding: {
          x: { field: 'row', type: 'nominal', sort: order, title: null, axis: { labelAngle: -35, labelLimit: 200 } },
          y: { field: 'value', type: 'quantitative', title: null, scale: { type: 'log' } },
          color: { field: 'row', type: 'nominal', sort: order, legend: null },
        },
      },
    },
  });
  return [path.basename(written.svg)];
}

function render(results: readonly Result[], trickle: number, faultEvery: number, files: readonly string[]): string {
  const lines = [
    `## Before / after (full load: closed loop, 64 connections; trickle: ${trickle} events/s open loop; 1 in ${faultEvery} batch writes fails transiently in the service rows)`,
    '',
    '| row | full load events/s | HTTP p99 ms (full) | commits/event | round trips/event | fsyncs/event (service WAL groups + commits) | mean batch | failed events | retries | trickle: end-to-end p50 / p99 ms | trickle: HTTP p99 ms | trickle: commits/event |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    if (r.pending) {
      lines.push(`| ${r.row.label} | pending (${r.pending}) | | | | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.row.label} | ${fmt(r.fullEventsPerSecond)} | ${ms(r.fullHttpP99Ms)} | ${perEventText(r.commitsPerEvent)} | ${perEventText(r.roundTripsPerEvent)} | ${perEventText(r.fsyncsPerEvent)} | ${fmt(r.meanBatch, 1)} | ${fmt(r.failedEvents)} | ${fmt(r.retries)} | ${ms(r.trickleEndToEndP50Ms)} / ${ms(r.trickleEndToEndP99Ms)} | ${ms(r.trickleHttpP99Ms)} | ${perEventText(r.trickleCommitsPerEvent)} |`,
    );
  }
  lines.push('', '### The fixed cost being amortised', '', '| row | mean batch / flush ms at full load | mean batch / flush ms at the trickle | fixed cost per batch ms (intercept) | marginal µs per event |', '| --- | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    if (!r.flushFit) continue;
    const fit = fixedCostMs(r.flushFit);
    lines.push(
      `| ${r.row.label} | ${fmt(r.flushFit.fullSize, 1)} / ${ms(r.flushFit.fullMs)} | ${fmt(r.flushFit.trickleSize, 1)} / ${ms(r.flushFit.trickleMs)} | ${fit ? ms(fit.fixedMs) : '—'} | ${fit ? fmt(fit.perEventUs, 1) : '—'} |`,
    );
  }
  lines.push(
    '',
    ...files.map((f) => `Figure: ${f} (and .png)`),
    '',
    '### Method',
    '',
    '- One embedded PostgreSQL (fsync on), a fresh migrated database per row, rows one after another. Full load: a timed closed-loop warm-up sizes a counted run (every request answered). Trickle: lib/paced.ts, open loop, 16 connections.',
    '- commits/event: transaction ids taken during the run per event stored (pg_current_snapshot xmax); round trips/event: pg_stat_statements statements less the COMMITs sent with the INSERT; fsyncs/event: the service\'s WAL group fsyncs (ingest_wal_fsync_duration_seconds_count) per event plus the commits per event (synchronous_commit=on: each commit waits for a PostgreSQL WAL flush, but concurrent commits may share one, so for the naive row this is an upper bound).',
    '- End to end: for the service, accepted → committed (ingest_batch_latency_seconds, per event, quantiles from buckets); for naive, the HTTP latency of its 201 (answered after the commit).',
    '- Fixed cost: mean flush duration (ingest_flush_duration_seconds: one COPY + commit, the PostgreSQL WAL flush included) against mean batch size at the two loads, a straight line through the two points; its intercept is what a batch costs whatever its size, the slope what each event adds. The naive row pays the intercept once per event.',
    `- Faults: bench/servers/write-path.ts wraps the COPY sink so that every ${faultEvery}th batch write throws SQLSTATE 40001 before reaching the database. "plain" sends batches straight to the COPY sink (a failed batch\'s events count in ingest_events_failed_total); "service" is the service\'s own write path (retry with backoff, breaker, poison splitting, dead-letter queue). The naive server has no fault injection.`,
  );
  return lines.join('\n');
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { duration: { default: 6, min: 2, max: 30 }, trickle: { default: 100, min: 1, max: 5000 }, 'fault-every': { default: 50, min: 0, max: 1_000_000 } },
});
const options: BenchOptions = { cpuProf: false, durationSeconds: args.duration, warmupSeconds: 2, connections: 64, rateConnections: 16, lowRate: 0 };
await runScenario('before-after', options, `load generator in its own process; ${ROWS.length} rows one after another; loopback only`, async (ctx) => {
  const results: Result[] = [];
  for (const row of ROWS) results.push(await runRow(ctx, row, args.trickle, args['fault-every']));
  const files = await figures(ctx, results);
  return { markdown: render(results, args.trickle, args['fault-every'], files), json: results };
});
