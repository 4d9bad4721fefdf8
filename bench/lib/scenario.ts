/**
 * What the scenario benches (durability.ts, tenants.ts, poison-lag.ts) share on top of harness.ts:
 * one PostgreSQL for the run, a results directory, every child killed at the end (also on error
 * and on SIGINT/SIGTERM), the service started with scenario settings, and metric differences.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { LoadOptions, LoadResult } from '../generators/load.ts';
import { startBenchServer, type BenchServer, type ModeDatabase } from './database.ts';
import {
  DRAIN_TIMEOUT_MS,
  RESULTS_DIR,
  ROOT,
  SERVICE_NODE_ARGS,
  measureDatabase,
  perEvent,
  progress,
  runLoadProcess,
  startHttpServer,
  withCpu,
  type BenchOptions,
  type Context,
  type HttpServer,
} from './harness.ts';
import { describeMachine, psqlVersion, type Machine } from './machine.ts';
import { exitOnSignal, killAll, sleep } from './processes.ts';
import { byLabel, histogram, histogramDelta, quantile, scrape, value, type Scrape } from './prometheus.ts';
import type { CpuUse, PerEvent } from './report.ts';

export interface ScenarioOutput {
  /** Markdown: tables, targets, method. */
  readonly markdown: string;
  readonly json: unknown;
}

/** Argument parsing shared by the scenario scripts: --name=N within [min, max]. */
/**
 * Run one scenario script: start PostgreSQL, run `work`, print the machine and the report, write
 * them to bench/results/<time>-<name>/. Every child process is killed and PostgreSQL stopped on the
 * way out, whatever happened; a failure sets the exit code.
 */
export async function runScenario(name: string, options: BenchOptions, setup: string, work: (ctx: Context) => Promise<ScenarioOutput>): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const runDir = path.join(RESULTS_DIR, `${stamp}-${name}`);
  // The load average before anything of ours starts.
  const machine = describeMachine();
  const startedAt = Date.now();
  let server: BenchServer | undefined;
  let stopping: Promise<void> | undefined;
  const stopServer = () => (stopping ??= server?.stop() ?? Promise.resolve());
  const removeSignalHandlers = exitOnSignal(stopServer, progress);
  try {
    await mkdir(runDir, { recursive: true });
    progress(`results and logs in ${path.relative(ROOT, runDir)}`);
    progress(process.env.DATABASE_URL ? 'using DATABASE_URL' : 'starting embedded PostgreSQL (fsync on)');
    server = await startBenchServer();
    const ctx: Context = { options, server, runDir };
    const output = await work(ctx);
    const rendered = `${machineSection(machine, server, setup)}\n\n${output.markdown}`;
    process.stdout.write(`\n${rendered}\n`);
    await writeFile(path.join(runDir, 'report.md'), `${rendered}\n`);
    await writeFile(path.join(runDir, 'results.json'), `${JSON.stringify({ machine, setup, results: output.json }, null, 2)}\n`);
    progress(`done in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  } catch (error) {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  } finally {
    killAll();
    await stopServer().catch((error: unknown) => progress(`stopping PostgreSQL failed: ${String(error)}`));
    removeSignalHandlers();
  }
}

/** What every scenario reports of one load run. */
export interface LoadFigures {
  readonly eventsPerSecond: number;
  readonly ok2xx: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly stored: number;
}

/** The same machine lines as run-bench's report. */
export function machineSection(machine: Machine, server: BenchServer, setup: string): string {
  const psql = psqlVersion();
  return [
    '## Machine',
    '',
    `- CPU: ${machine.cpu}, ${machine.cores} cores; memory ${machine.memoryGiB} GiB; ${machine.os}`,
    `- Node ${machine.node}; PostgreSQL ${server.settings.version} (${server.embedded ? 'embedded' : 'DATABASE_URL'}; fsync=${server.settings.fsync}, synchronous_commit=${server.settings.synchronousCommit}); ${psql ?? 'psql not on PATH'}`,
    `- load average at start: ${machine.loadAverage}`,
    `- ${setup}`,
  ].join('\n');
}

/**
 * src/server.ts on `db` with AUTH=off, /metrics on the main listener, LOG_LEVEL=warn and a fresh
 * DATA_DIR (so no write-ahead log of an earlier start is replayed); `env` on top; `nodeArgs` before tsx
 * (for flags NODE_OPTIONS does not allow, such as --cpu-prof).
 */
export function startIngestService(ctx: Context, db: ModeDatabase, name: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<HttpServer> {
  return startHttpServer(ctx, name, [...nodeArgs, ...SERVICE_NODE_ARGS, path.join(ROOT, 'src', 'server.ts')], {
    DATABASE_URL: db.url,
    LOG_LEVEL: 'warn',
    DATA_DIR: path.join(ctx.runDir, `${name}-data`),
    AUTH: 'off',
    METRICS_PORT: '',
    METRICS_ON_PUBLIC_LISTENER: 'true',
    ...env,
  });
}

/** Wait until every accepted event has settled (stored, failed or dropped), then scrape. */
export async function waitForDrain(metricsUrl: string, timeoutMs = DRAIN_TIMEOUT_MS): Promise<Scrape> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const metrics = await scrape(metricsUrl);
    const accepted = value(metrics, 'ingest_events_accepted_total');
    const settled =
      value(metrics, 'ingest_events_stored_total') +
      value(metrics, 'ingest_events_failed_total') +
      value(metrics, 'ingest_events_dropped_total') +
      value(metrics, 'ingest_events_duplicate_total') +
      value(metrics, 'ingest_events_dead_lettered_total');
    if (value(metrics, 'ingest_queue_depth') === 0 && settled >= accepted) return metrics;
    if (Date.now() > deadline) throw new Error(`the service did not drain within ${timeoutMs} ms (${accepted - settled} unsettled)`);
    await sleep(100);
  }
}

/** A counter's (or gauge's) change between two scrapes of one process. */
export const delta = (after: Scrape, before: Scrape, name: string, where: Record<string, string> = {}) =>
  value(after, name, where) - value(before, name, where);

/** "size 97%, time 3%": each label value's share of the change in `name`. */
export function shares(after: Scrape, before: Scrape, name: string, label: string): string {
  const previous = byLabel(before, name, label);
  const changes = [...byLabel(after, name, label)]
    .map(([key, count]) => [key, count - (previous.get(key) ?? 0)] as const)
    .filter(([, count]) => count > 0)
    .sort((a, b) => b[1] - a[1]);
  const total = changes.reduce((sum, [, count]) => sum + count, 0);
  return changes.map(([key, count]) => `${key} ${((count / total) * 100).toFixed(0)}%`).join(', ') || '—';
}

/** "overloaded 2, tenant_over_share 40": each label value's change in `name`, largest first. */
export function counts(after: Scrape, before: Scrape, name: string, label: string): string {
  const previous = byLabel(before, name, label);
  return (
    [...byLabel(after, name, label)]
      .map(([key, count]) => [key, count - (previous.get(key) ?? 0)] as const)
      .filter(([, count]) => count > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([key, count]) => `${key} ${count.toLocaleString('en-US')}`)
      .join(', ') || '—'
  );
}

export interface Batching {
  readonly flushes: number;
  readonly meanSize: number;
  readonly latencyP50Ms: number | undefined;
  readonly latencyP99Ms: number | undefined;
  readonly flushReasons: string;
}

export function batching(after: Scrape, before: Scrape): Batching {
  const latency = histogramDelta(histogram(after, 'ingest_batch_latency_seconds'), histogram(before, 'ingest_batch_latency_seconds'));
  const sizes = histogramDelta(histogram(after, 'ingest_batch_size'), histogram(before, 'ingest_batch_size'));
  const ms = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);
  return {
    flushes: delta(after, before, 'ingest_flushes_total'),
    meanSize: sizes.count > 0 ? sizes.sum / sizes.count : 0,
    latencyP50Ms: ms(quantile(latency, 0.5)),
    latencyP99Ms: ms(quantile(latency, 0.99)),
    flushReasons: shares(after, before, 'ingest_flushes_total', 'reason'),
  };
}

export interface ServiceRun {
  readonly load: LoadResult;
  readonly before: Scrape;
  readonly after: Scrape;
  /** Δ ingest_events_stored_total. */
  readonly stored: number;
  readonly perEvent: PerEvent;
  readonly cpu: CpuUse;
}

/**
 * One load run against the service: drained before and after, the database's transaction ids
 * and the CPU read around it (the drain included: the last batches are part of the run's cost).
 */
export async function measureServiceRun(ctx: Context, db: ModeDatabase, server: HttpServer, name: string, load: LoadOptions): Promise<ServiceRun> {
  const metricsUrl = `${server.baseUrl}/metrics`;
  // Drained before the database's counters are read, so a backlog left by a warm-up is not counted.
  await waitForDrain(metricsUrl);
  let before: Scrape = [];
  const { result, before: counters0, after: counters1 } = await measureDatabase(ctx, db, async () => {
    before = await scrape(metricsUrl);
    return withCpu(ctx, server, async () => {
      const result = await runLoadProcess(ctx, name, load);
      return { load: result, after: await waitForDrain(metricsUrl) };
    });
  });
  const stored = delta(result.after, before, 'ingest_events_stored_total');
  const flushes = delta(result.after, before, 'ingest_flushes_total');
  const failed = delta(result.after, before, 'ingest_events_failed_total');
  if (failed > 0) progress(`WARNING: ${failed} events failed to commit during ${name}`);
  return {
    load: result.load,
    before,
    after: result.after,
    stored,
    perEvent: perEvent(ctx, counters0, counters1, stored, 3 * flushes),
    cpu: result.cpu,
  };
}

/**
 * A timed closed-loop warm-up with `base`'s bodies, whose best second sizes the measured run: that
 * one stops after rate × durationSeconds answers, so every request it sent is answered (as
 * harness.warmUp, for any LoadOptions).
 */
export async function countedFullLoad(ctx: Context, name: string, base: LoadOptions): Promise<LoadOptions> {
  const warm = await runLoadProcess(ctx, `${name}-warmup`, { ...base, durationSeconds: ctx.options.warmupSeconds });
  const perSecond = warm.bestPerSecond ?? warm.ok2xx / warm.durationSeconds;
  const amount = Math.max(base.connections * 10, Math.round(perSecond * ctx.options.durationSeconds));
  return { ...base, durationSeconds: ctx.options.durationSeconds, amount };
}

/** 1234.5 → "1,235"; undefined → "—". */
export const fmt = (n: number | undefined, digits = 0) =>
  n === undefined || !Number.isFinite(n) ? '—' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Milliseconds with two decimals below 10, one above. */
export const ms = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : n < 10 ? n.toFixed(2) : n.toFixed(1));

export const passText = (pass: boolean | undefined) => (pass === undefined ? 'n/a' : pass ? 'PASS' : 'FAIL');
