/** Mode (b): the service itself, at full load and at steady rates, with its /metrics read around each run. */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { LoadOptions } from '../generators/load.ts';
import { createModeDatabase, type ModeDatabase } from '../lib/database.ts';
import {
  DRAIN_TIMEOUT_MS,
  RESULTS_DIR,
  ROOT,
  SERVER_STOP_GRACE_MS,
  SERVICE_NODE_ARGS,
  fullScenario,
  measureDatabase,
  perEvent,
  progress,
  rate,
  runLoadProcess,
  startHttpServer,
  steadyLoad,
  warmUp,
  withCpu,
  type Context,
  type HttpServer,
} from '../lib/harness.ts';
import { Ledger } from '../lib/ledger.ts';
import { sleep, stopChild } from '../lib/processes.ts';
import { byLabel, describeBuckets, histogram, histogramDelta, quantile, scrape, value, type Scrape } from '../lib/prometheus.ts';
import type { Integrity, Measurement } from '../lib/report.ts';
import type { ProfileWindow } from '../summarise-profile.ts';

export interface ServiceRun {
  readonly measurements: Measurement[];
  readonly integrity: Integrity;
  /** The steady, open-loop run at half of the peak. */
  readonly halfPeak: Measurement | undefined;
  readonly halfPeakRate: number;
  readonly storedAtFullLoad: number;
  readonly profile: string | undefined;
  /** The full-load run, on the profile's clock. */
  readonly profileWindow: ProfileWindow | undefined;
}

async function startService(ctx: Context, db: ModeDatabase, name: string, cpuProf: boolean): Promise<HttpServer> {
  // No --cpu-prof-name: tsx's loader thread writes a profile too, and one fixed name would be shared.
  const profiling = cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${RESULTS_DIR}`] : [];
  return startHttpServer(ctx, name, [...profiling, ...SERVICE_NODE_ARGS, path.join(ROOT, 'src', 'server.ts')], {
    DATABASE_URL: db.url,
    LOG_LEVEL: 'warn',
    DATA_DIR: path.join(ctx.runDir, 'service-data'),
    // The bench sends no API key: measure the ingest path without authentication.
    AUTH: 'off',
    // /metrics on the main listener (the bench scrapes it there).
    METRICS_PORT: '',
    METRICS_ON_PUBLIC_LISTENER: 'true',
  });
}

/** Wait until every accepted event has settled (stored, failed or dropped), then scrape. */
async function waitForDrain(metricsUrl: string): Promise<Scrape> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    const metrics = await scrape(metricsUrl);
    const accepted = value(metrics, 'ingest_events_accepted_total');
    const settled =
      value(metrics, 'ingest_events_stored_total') + value(metrics, 'ingest_events_failed_total') + value(metrics, 'ingest_events_dropped_total');
    if (value(metrics, 'ingest_queue_depth') === 0 && settled >= accepted) return metrics;
    if (Date.now() > deadline) throw new Error(`the service did not drain within ${DRAIN_TIMEOUT_MS} ms (${accepted - settled} unsettled)`);
    await sleep(100);
  }
}

async function measureService(ctx: Context, db: ModeDatabase, server: HttpServer, name: string, load: LoadOptions) {
  const metricsUrl = `${server.baseUrl}/metrics`;
  let metricsBefore: Scrape = [];
  const { result, before, after } = await measureDatabase(ctx, db, async () => {
    metricsBefore = await waitForDrain(metricsUrl);
    // The CPU window includes the drain: the batches of the last events are part of the run's cost.
    return withCpu(ctx, server, async () => {
      const result = await runLoadProcess(ctx, name, load);
      // prom-client resets its event-loop delay histogram at each scrape: this one covers the run.
      const loop = await scrape(metricsUrl);
      const metricsAfter = await waitForDrain(metricsUrl);
      return { load: result, loop, metricsAfter };
    });
  });
  const delta = (metric: string) => value(result.metricsAfter, metric) - value(metricsBefore, metric);
  const stored = delta('ingest_events_stored_total');
  const flushes = delta('ingest_flushes_total');
  const latency = histogramDelta(histogram(result.metricsAfter, 'ingest_batch_latency_seconds'), histogram(metricsBefore, 'ingest_batch_latency_seconds'));
  const sizes = histogramDelta(histogram(result.metricsAfter, 'ingest_batch_size'), histogram(metricsBefore, 'ingest_batch_size'));
  const reasonsBefore = byLabel(metricsBefore, 'ingest_flushes_total', 'reason');
  const reasons = [...byLabel(result.metricsAfter, 'ingest_flushes_total', 'reason')]
    .map(([reason, count]) => [reason, count - (reasonsBefore.get(reason) ?? 0)] as const)
    .filter(([, count]) => count > 0)
    .map(([reason, count]) => `${reason} ${((count / flushes) * 100).toFixed(0)}%`)
    .join(', ');
  const fsyncs = delta('ingest_wal_fsync_duration_seconds_count');
  if (fsyncs > 0) {
    // The group commit: how many events each fsync covered, and how long the fsyncs took.
    const fsyncHistogram = histogramDelta(histogram(result.metricsAfter, 'ingest_wal_fsync_duration_seconds'), histogram(metricsBefore, 'ingest_wal_fsync_duration_seconds'));
    progress(
      `${name}: WAL ${fsyncs} fsyncs, ${(delta('ingest_wal_group_size_sum') / fsyncs).toFixed(1)} events per fsync, fsync mean ${((delta('ingest_wal_fsync_duration_seconds_sum') / fsyncs) * 1000).toFixed(2)} ms, p99 ≈ ${((quantile(fsyncHistogram, 0.99) ?? 0) * 1000).toFixed(1)} ms`,
    );
  }
  const failed = delta('ingest_events_failed_total');
  if (failed > 0) progress(`WARNING: ${failed} events failed to commit during ${name}`);
  return {
    load: result.load,
    cpu: result.cpu,
    stored,
    metricsAfter: result.metricsAfter,
    // Derived without pg_stat_statements: the sink's 3 round trips per batch (BEGIN, COPY, INSERT+COMMIT).
    perEvent: perEvent(ctx, before, after, stored, 3 * flushes),
    batching: {
      latencyP50Ms: scaled(quantile(latency, 0.5)),
      latencyP99Ms: scaled(quantile(latency, 0.99)),
      flushes,
      meanSize: sizes.count > 0 ? sizes.sum / sizes.count : 0,
      sizes: describeBuckets(sizes),
      flushReasons: reasons || '—',
      eventLoopDelayP99Ms: loopDelayMs(value(result.loop, 'nodejs_eventloop_lag_p99_seconds')),
      eventLoopDelayMaxMs: loopDelayMs(value(result.loop, 'nodejs_eventloop_lag_max_seconds')),
      gcMs: delta('nodejs_gc_duration_seconds_sum') * 1000,
    },
  };
}

/** prom-client samples the loop every 10 ms and records the whole interval: the delay is the excess. */
const loopDelayMs = (intervalSeconds: number) => Math.max(0, intervalSeconds * 1000 - 10);

const scaled = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);

export async function runService(ctx: Context): Promise<ServiceRun> {
  const db = await createModeDatabase(ctx.server, 'service');
  const measurements: Measurement[] = [];
  const exitCodes: (number | null)[] = [];
  const problems: string[] = [];
  const ledger = new Ledger();
  await ledger.open(ctx, db);
  let profile: string | undefined;
  let profileWindow: ProfileWindow | undefined;
  let halfPeak: Measurement | undefined;
  let half = 0;
  let storedAtFullLoad = 0;

  progress(`(b) service: starting on ${db.name}${ctx.options.cpuProf ? ' with --cpu-prof' : ''}`);
  let server: HttpServer | undefined = await startService(ctx, db, 'service-full', ctx.options.cpuProf);
  try {
    const url = () => `${server!.baseUrl}/event`;
    const metricsUrl = `${server.baseUrl}/metrics`;
    const { measured } = await ledger.warmUp(db, () => warmUp(ctx, 'service', url()), () => waitForDrain(metricsUrl));

    const fullFromUs = Number(process.hrtime.bigint() / 1000n);
    const full = await measureService(ctx, db, server, 'service-full', measured);
    profileWindow = { fromUs: fullFromUs, toUs: Number(process.hrtime.bigint() / 1000n) };
    ledger.add(full.load);
    storedAtFullLoad = full.stored;
    const { load, perEvent, batching, cpu } = full;
    measurements.push({
      mode: 'b',
      scenario: fullScenario(ctx, load),
      fullLoad: true,
      load,
      ...rate(load.ok2xx, load.durationSeconds),
      perEvent,
      batching,
      cpu,
    });
    half = Math.max(1, Math.floor(measurements[0]!.eventsPerSecond / 2));

    if (ctx.options.cpuProf) {
      // The profile covers the full-load process only; stopping it writes the profile.
      problems.push(...serviceProblems(full.metricsAfter));
      const pid = server.child.process.pid;
      exitCodes.push(await stopChild(server.child, SERVER_STOP_GRACE_MS));
      server = undefined;
      profile = pid === undefined ? undefined : await mainThreadProfile(pid);
      progress('(b) service: restarting without the profiler for the steady-rate runs');
      server = await startService(ctx, db, 'service-rates', false);
      const restarted = server;
      // A fresh process is cold (JIT, connections): warm it up at full load like the first one.
      await ledger.warmUp(db, () => warmUp(ctx, 'service-restarted', url()), () => waitForDrain(`${restarted.baseUrl}/metrics`));
    }
    progress(`(b) service: steady rates (half of peak = ${half}/s)`);
    const runs: [string, string, LoadOptions][] = [
      [`steady ${half}/s (half of peak), open loop`, 'service-half-steady', steadyLoad(ctx, url(), half, 'paced')],
      [`${half}/s (half of peak), autocannon overallRate`, 'service-half-autocannon', steadyLoad(ctx, url(), half, 'autocannon')],
    ];
    if (ctx.options.lowRate > 0 && ctx.options.lowRate < half) {
      runs.push([`steady ${ctx.options.lowRate}/s, open loop`, 'service-low-steady', steadyLoad(ctx, url(), ctx.options.lowRate, 'paced')]);
    }
    let last: Scrape = [];
    for (const [scenario, name, options] of runs) {
      const run = await measureService(ctx, db, server, name, options);
      ledger.add(run.load);
      const measurement: Measurement = {
        mode: 'b',
        scenario,
        fullLoad: false,
        load: run.load,
        ...rate(run.load.ok2xx, run.load.durationSeconds),
        perEvent: run.perEvent,
        batching: run.batching,
        cpu: run.cpu,
      };
      measurements.push(measurement);
      halfPeak ??= measurement;
      last = run.metricsAfter;
    }
    problems.push(...serviceProblems(last));
  } finally {
    if (server) exitCodes.push(await stopChild(server.child, SERVER_STOP_GRACE_MS));
  }
  if (exitCodes.some((code) => code !== 0)) problems.push('a non-zero exit code (3: events were spilled at shutdown)');
  return {
    measurements,
    integrity: await ledger.settle(ctx, db, 'b', exitCodes, problems),
    halfPeak,
    halfPeakRate: half,
    storedAtFullLoad,
    profile,
    profileWindow,
  };
}

/** Failed, dropped or duplicate events in one service process's counters. */
function serviceProblems(metrics: Scrape): string[] {
  const problems: string[] = [];
  const failed = value(metrics, 'ingest_events_failed_total');
  const dropped = value(metrics, 'ingest_events_dropped_total');
  const duplicates = value(metrics, 'ingest_events_duplicate_total');
  const errors5xx = [...byLabel(metrics, 'ingest_http_responses_total', 'status')]
    .filter(([status]) => status.startsWith('5'))
    .reduce((sum, [, count]) => sum + count, 0);
  if (failed > 0) problems.push(`${failed} events failed to commit`);
  if (dropped > 0) problems.push(`${dropped} events dropped`);
  if (duplicates > 0) problems.push(`${duplicates} duplicate ids`);
  if (errors5xx > 0) problems.push(`${errors5xx} 5xx responses`);
  return problems;
}

/** Node names profiles CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; the main thread is 0. */
async function mainThreadProfile(pid: number): Promise<string | undefined> {
  const name = (await readdir(RESULTS_DIR)).find((entry) => entry.includes(`.${pid}.0.`) && entry.endsWith('.cpuprofile'));
  return name === undefined ? undefined : path.join(RESULTS_DIR, name);
}
