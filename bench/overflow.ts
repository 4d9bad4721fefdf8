/**
 * `npm run bench:overflow [-- --duration=S] [--rate=R] [--heap-mb=M] [--write-delay-ms=D]`
 *
 * A producer faster than the consumer. The consumer is slowed (every batch write waits
 * --write-delay-ms first: bench/servers/write-path.ts), the producer sends 1,000-event NDJSON
 * requests at --rate events/s, open loop. Two variants, each under the same V8 heap limit
 * (--max-old-space-size=--heap-mb):
 *   bounded    the service's own bounds (QUEUE_CAPACITY 2048, QUEUE_MAX_BYTES 64 MiB): a request that
 *              does not fit waits for room up to ADMISSION_WAIT_MS, then 429 (503 when it can never fit)
 *   unbounded  the same service with its bounds set out of reach (QUEUE_CAPACITY 10,000,000,
 *              QUEUE_MAX_BYTES 4 GiB): everything is accepted, the queue grows until the heap limit
 *              kills the process
 * DURABILITY=memory in both (in WAL mode WAL_MAX_BYTES would bound the backlog on disk instead).
 * Samples every 250 ms: queue depth (/metrics) and the server's RSS (/proc). Prints the counters,
 * the exit, and draws depth and RSS over time to bench/results/<time>-overflow/.
 */
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Arrival, Schedule } from './generators/bursty-schedule.ts';
import { DEFAULT_BURSTY } from './generators/bursty-schedule.ts';
import type { ReplayResult } from './generators/replay.ts';
import { createModeDatabase } from './lib/database.ts';
import { BENCH_DIR, TSX, progress, startHttpServer, type BenchOptions, type Context, type HttpServer } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { lineChart, writeFigure, type Datum } from './lib/plot.ts';
import { sleep, stopChild } from './lib/processes.ts';
import { scrape, value, type Scrape } from './lib/prometheus.ts';
import { runReplayProcess } from './lib/replay-run.ts';
import { counts, fmt, runScenario } from './lib/scenario.ts';

type Variant = 'bounded' | 'unbounded';
const LABELS: Record<Variant, string> = {
  bounded: 'bounded (the service: wait ≤ ADMISSION_WAIT_MS, then 429)',
  unbounded: 'unbounded (bounds out of reach)',
};
const ENV: Record<Variant, Record<string, string>> = {
  bounded: {},
  unbounded: { QUEUE_CAPACITY: '10000000', QUEUE_MAX_BYTES: String(4 * 1024 ** 3) },
};
const SAMPLE_MS = 250;
const REQUEST_EVENTS = 1000;

interface Point {
  readonly t: number;
  readonly depth: number | undefined;
  readonly rssMiB: number | undefined;
}

interface VariantResult {
  readonly variant: Variant;
  readonly points: readonly Point[];
  readonly replay: ReplayResult;
  readonly exit: { code: number | null; signal: string | null; atSeconds: number | undefined };
  readonly oom: boolean;
  readonly last: Scrape | undefined;
  readonly first: Scrape;
}

function rssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('VmRSS:'));
    return line ? Number(line.split(/\s+/)[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

function schedule(rate: number, durationSeconds: number): Schedule {
  const requestsPerSecond = rate / REQUEST_EVENTS;
  const arrivals: Arrival[] = [];
  for (let i = 0; i < requestsPerSecond * durationSeconds; i++) arrivals.push({ atMs: (i * 1000) / requestsPerSecond, events: REQUEST_EVENTS, burst: 0 });
  return { options: { ...DEFAULT_BURSTY, durationSeconds, burstEvents: REQUEST_EVENTS, burstRequestEvents: REQUEST_EVENTS }, arrivals, burstStartsMs: [] };
}

async function runVariant(ctx: Context, variant: Variant, scheduleFile: string, seconds: number, heapMb: number, writeDelayMs: number): Promise<VariantResult> {
  const db = await createModeDatabase(ctx.server, `overflow_${variant}`);
  const server: HttpServer = await startHttpServer(ctx, variant, [`--max-old-space-size=${heapMb}`, ...TSX, path.join(BENCH_DIR, 'servers', 'write-path.ts')], {
    DATABASE_URL: db.url,
    LOG_LEVEL: 'warn',
    DATA_DIR: path.join(ctx.runDir, `${variant}-data`),
    AUTH: 'off',
    METRICS_PORT: '',
    METRICS_ON_PUBLIC_LISTENER: 'true',
    DURABILITY: 'memory',
    BENCH_WRITE_DELAY_MS: String(writeDelayMs),
    ...ENV[variant],
  });
  const pid = server.child.process.pid;
  const metricsUrl = `${server.baseUrl}/metrics`;
  const first = await scrape(metricsUrl);
  let exitedAt: number | undefined;
  const started = Date.now();
  void server.child.exited.then(() => (exitedAt = (Date.now() - started) / 1000));
  progress(`${LABELS[variant]}: ${path.basename(scheduleFile)} for ${seconds} s, heap limit ${heapMb} MB, each batch write delayed ${writeDelayMs} ms`);
  let done = false;
  const replaying = runReplayProcess(ctx, variant, { baseUrl: server.baseUrl, scheduleFile, bulkConnections: 32 }, seconds * 3000 + 60_000).finally(() => (done = true));
  const points: Point[] = [];
  let last: Scrape | undefined;
  for (let k = 1; !done || k * SAMPLE_MS <= seconds * 1000; k++) {
    await sleep(Math.max(0, started + k * SAMPLE_MS - Date.now()));
    const metrics = exitedAt === undefined ? await scrape(metricsUrl).catch(() => undefined) : undefined;
    if (metrics) last = metrics;
    points.push({ t: (k * SAMPLE_MS) / 1000, depth: metrics && value(metrics, 'ingest_queue_depth'), rssMiB: exitedAt === undefined ? rssMiB(pid) : undefined });
    if (k * SAMPLE_MS > (seconds + 60) * 1000) break;
  }
  const replay = await replaying;
  if (exitedAt === undefined) await stopChild(server.child, 2000);
  const { code, signal } = await server.child.exited;
  const log = await readFile(path.join(ctx.runDir, `${variant}.log`), 'utf8').catch(() => '');
  return { variant, points, replay, exit: { code, signal, atSeconds: exitedAt }, oom: /heap out of memory|Reached heap limit/i.test(log), last, first };
}

async function figures(ctx: Context, results: readonly VariantResult[]): Promise<string[]> {
  const data: Datum[] = results.flatMap((r) =>
    r.points.flatMap((p) => [
      { t: p.t, variant: r.variant, panel: 'queue depth (events)', value: p.depth ?? null },
      { t: p.t, variant: r.variant, panel: 'RSS (MiB)', value: p.rssMiB ?? null },
    ]),
  );
  const written = await writeFigure(
    ctx.runDir,
    lineChart({
      name: 'overflow-depth-rss',
      title: 'Producer faster than the consumer: queue depth and RSS, bounded vs unbounded',
      data,
      x: { field: 't', title: 'time (s)' },
      y: { field: 'value', title: '' },
      series: { field: 'variant', title: 'variant' },
      row: { field: 'panel', title: '' },
    }),
  );
  return [path.basename(written.svg)];
}

function render(results: readonly VariantResult[], rate: number, seconds: number, heapMb: number, writeDelayMs: number, files: readonly string[]): string {
  const lines = [
    `## Overflow: ${fmt(rate)} events/s offered (1,000-event NDJSON requests), consumer slowed by ${writeDelayMs} ms per batch write, heap limit ${heapMb} MB`,
    '',
    '| variant | events offered | events in 2xx | 429 | 503 | errors (connection) | accepted | stored | shed (ingest_shed_total) | peak depth | peak RSS MiB | exit | killed by the heap limit |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |',
  ];
  for (const r of results) {
    const peak = (pick: (p: Point) => number | undefined) => Math.max(...r.points.map((p) => pick(p) ?? 0));
    const after = r.last ?? r.first;
    lines.push(
      `| ${LABELS[r.variant]} | ${fmt(r.replay.events)} | ${fmt(r.replay.eventsOk)} | ${fmt(r.replay.statusCodes['429'] ?? 0)} | ${fmt(r.replay.statusCodes['503'] ?? 0)} | ${fmt(r.replay.errors)} | ${fmt(value(after, 'ingest_events_accepted_total') - value(r.first, 'ingest_events_accepted_total'))} | ${fmt(value(after, 'ingest_events_stored_total') - value(r.first, 'ingest_events_stored_total'))} | ${counts(after, r.first, 'ingest_shed_total', 'reason')} | ${fmt(peak((p) => p.depth))} | ${fmt(peak((p) => p.rssMiB))} | ${r.exit.atSeconds === undefined ? 'ran to the end' : `exited at ${r.exit.atSeconds.toFixed(1)} s`}, code ${r.exit.code}, signal ${r.exit.signal ?? '—'} | ${r.oom ? 'yes ("heap out of memory" in its log)' : 'no'} |`,
    );
  }
  lines.push(
    '',
    ...files.map((f) => `Figure: ${f} (and .png)`),
    '',
    '### Method',
    '',
    `- bench/servers/write-path.ts (the service's runtime; every batch write first waits ${writeDelayMs} ms, so with FLUSH_CONCURRENCY 2 and 500-event batches the consumer drains at most 2 × 500 / ${writeDelayMs / 1000} s = ${fmt((2 * 500 * 1000) / writeDelayMs)} events/s), started with node --max-old-space-size=${heapMb}, DURABILITY=memory, a fresh database each.`,
    `- Producer: generators/replay.ts, one 1,000-event request every ${(REQUEST_EVENTS / rate) * 1000} ms for ${seconds} s, open loop on up to 32 connections (no retries: a 429 is counted and the events are not resent).`,
    '- depth: ingest_queue_depth scraped every 250 ms (no sample once the process is gone or does not answer within 5 s); RSS: VmRSS of the server process from /proc. "accepted", "stored", shed: the counters\' change up to the last successful scrape.',
  );
  return lines.join('\n');
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: {
    duration: { default: 25, min: 2, max: 60 },
    rate: { default: 20_000, min: 1000, max: 100_000 },
    'heap-mb': { default: 96, min: 32, max: 4096 },
    'write-delay-ms': { default: 500, min: 0, max: 10_000 },
  },
});
const options: BenchOptions = { cpuProf: false, durationSeconds: args.duration, warmupSeconds: 0, connections: 32, rateConnections: 32, lowRate: 0 };
await runScenario('overflow', options, `replay generator in its own process; open loop; two variants one after another; loopback only`, async (ctx) => {
  const file = path.join(ctx.runDir, 'schedule-overflow.json');
  await writeFile(file, JSON.stringify(schedule(args.rate, args.duration)));
  const results: VariantResult[] = [];
  for (const variant of ['bounded', 'unbounded'] as const) results.push(await runVariant(ctx, variant, file, args.duration, args['heap-mb'], args['write-delay-ms']));
  const files = await figures(ctx, results);
  return { markdown: render(results, args.rate, args.duration, args['heap-mb'], args['write-delay-ms'], files), json: results.map(({ last: _l, first: _f, ...r }) => r) };
});
