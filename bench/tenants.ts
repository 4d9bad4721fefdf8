/**
 * `npm run bench:tenants [-- --duration=S] [--warmup=S] [--connections=N] [--fair-duration=S]`
 *
 * BATCH_PARTITION=none against BATCH_PARTITION=tenant:
 *  1. full load (closed loop) with events spread uniformly over 10 and over 1,000 tenants: events/s,
 *     commits per event, batch sizes and latency, flush reasons;
 *  2. fairness: one noisy tenant at 10× the rate of two quiet ones (open loop, above what the
 *     service drains), against the two quiet tenants alone at the same rate, per partition mode:
 *     per tenant 202 vs 429 and the quiet tenants' latency.
 * AUTH=off; the body's `tenant` field sets the tenant. Every child process is killed at the end.
 */
import { parseBenchArgs } from './lib/options.ts';
import path from 'node:path';
import { createModeDatabase, type ModeDatabase } from './lib/database.ts';
import { BENCH_DIR, SERVER_STOP_GRACE_MS, TSX, progress, type BenchOptions, type Context, type HttpServer } from './lib/harness.ts';
import { spawnChild, stopChild, waitForExit } from './lib/processes.ts';
import { perEventText } from './lib/report.ts';
import {
  batching,
  counts,
  countedFullLoad,
  fmt,
  measureServiceRun,
  ms,
  passText,
  runScenario,
  startIngestService,
  waitForDrain,
  type Batching,
  type LoadFigures,
} from './lib/scenario.ts';
import type { StreamOptions, StreamResult, StreamsOptions, StreamsResult } from './generators/load-streams.ts';

type Partition = 'none' | 'tenant';
const PARTITIONS: readonly Partition[] = ['none', 'tenant'];
const TENANT_COUNTS = [10, 1000] as const;
/** Noisy : quiet rate. */
const NOISE_FACTOR = 10;
/** The offered total is at least this multiple of the measured peak. */
const OVERLOAD = 1.25;
const MIN_QUIET_RATE = 300;

interface SpreadResult extends LoadFigures {
  readonly partition: Partition;
  readonly tenants: number;
  readonly commitsPerEvent: number;
  readonly batching: Batching;
  readonly shed: string;
  readonly exitCode: number | null;
}

interface FairRun {
  readonly run: 'quiet alone' | 'noisy + quiet';
  readonly streams: readonly StreamResult[];
  readonly shed: string;
  readonly batching: Batching;
}

interface FairnessResult {
  readonly partition: Partition;
  readonly runs: readonly FairRun[];
  readonly exitCode: number | null;
}

async function runSpread(ctx: Context, partition: Partition, tenants: number): Promise<SpreadResult> {
  const id = `${partition}-${tenants}`;
  const db = await createModeDatabase(ctx.server, `part_${partition}_${tenants}`);
  progress(`BATCH_PARTITION=${partition}, ${tenants} tenants: starting the service on ${db.name}`);
  const server = await startIngestService(ctx, db, `service-${id}`, { BATCH_PARTITION: partition });
  let exitCode: number | null;
  let result: Omit<SpreadResult, 'exitCode'>;
  try {
    const measured = await countedFullLoad(ctx, id, {
      url: `${server.baseUrl}/event`,
      connections: ctx.options.connections,
      durationSeconds: ctx.options.durationSeconds,
      variant: { tenants },
    });
    const run = await measureServiceRun(ctx, db, server, `${id}-full`, measured);
    const { load } = run;
    result = {
      partition,
      tenants,
      eventsPerSecond: load.ok2xx / load.durationSeconds,
      ok2xx: load.ok2xx,
      non2xx: load.non2xx,
      errors: load.errors + load.timeouts,
      p50Ms: load.latency.p50,
      p99Ms: load.latency.p99,
      stored: run.stored,
      commitsPerEvent: run.perEvent.commits,
      batching: batching(run.after, run.before),
      shed: counts(run.after, run.before, 'ingest_shed_total', 'reason'),
    };
  } finally {
    exitCode = await stopChild(server.child, SERVER_STOP_GRACE_MS);
  }
  return { ...result, exitCode };
}

async function runStreamsProcess(ctx: Context, name: string, options: StreamsOptions): Promise<StreamsResult> {
  const child = spawnChild(process.execPath, [...TSX, path.join(BENCH_DIR, 'generators', 'load-streams.ts'), JSON.stringify(options)], {
    logFile: path.join(ctx.runDir, `load-${name}.log`),
    captureStdout: true,
  });
  const { code } = await waitForExit(child, (options.warmupSeconds + options.durationSeconds) * 1000 + options.timeoutMs + 60_000, `the load generator (${name})`);
  const line = child.stdout().trim().split('\n').at(-1);
  if (code !== 0 || !line) throw new Error(`the load generator (${name}) failed with code ${code}; see load-${name}.log`);
  const result = JSON.parse(line) as StreamsResult;
  for (const stream of result.streams) {
    progress(`${name} ${stream.name}: ${JSON.stringify(stream.statusCodes)}, p50 ${stream.latency.p50.toFixed(2)} ms, p99 ${stream.latency.p99.toFixed(2)} ms`);
  }
  return result;
}

async function fairRun(ctx: Context, server: HttpServer, name: string, run: FairRun['run'], options: StreamsOptions): Promise<FairRun> {
  const metricsUrl = `${server.baseUrl}/metrics`;
  const before = await waitForDrain(metricsUrl);
  const result = await runStreamsProcess(ctx, name, options);
  const after = await waitForDrain(metricsUrl);
  return { run, streams: result.streams, shed: counts(after, before, 'ingest_shed_total', 'reason'), batching: batching(after, before) };
}

async function runFairness(ctx: Context, partition: Partition, quietRate: number, durationSeconds: number): Promise<FairnessResult> {
  const db: ModeDatabase = await createModeDatabase(ctx.server, `fair_${partition}`);
  progress(`fairness, BATCH_PARTITION=${partition}: quiet ${quietRate}/s × 2, noisy ${quietRate * NOISE_FACTOR}/s`);
  const server = await startIngestService(ctx, db, `service-fair-${partition}`, { BATCH_PARTITION: partition });
  let exitCode: number | null;
  const runs: FairRun[] = [];
  try {
    const url = `${server.baseUrl}/event`;
    const stream = (name: string, rate: number, connections: number): StreamOptions => ({
      name,
      url,
      ratePerSecond: rate,
      connections,
      variant: { tenant: name },
    });
    const quiet = [stream('quiet-a', quietRate, 32), stream('quiet-b', quietRate, 32)];
    const noisy = stream('noisy', quietRate * NOISE_FACTOR, 64);
    const common = { warmupSeconds: 0, timeoutMs: 5000 };
    // Warm the process up (JIT, connections) with the same three tenants, so no other tenant
    // counts as active (TENANT_ACTIVE_WINDOW_MS) when the fair shares are computed.
    await runStreamsProcess(ctx, `fair-${partition}-warmup`, {
      ...common,
      durationSeconds: ctx.options.warmupSeconds,
      streams: [...quiet, { ...noisy, ratePerSecond: quietRate }],
    });
    runs.push(await fairRun(ctx, server, `fair-${partition}-quiet`, 'quiet alone', { ...common, durationSeconds, streams: quiet }));
    runs.push(await fairRun(ctx, server, `fair-${partition}-noisy`, 'noisy + quiet', { ...common, durationSeconds, streams: [noisy, ...quiet] }));
  } finally {
    exitCode = await stopChild(server.child, SERVER_STOP_GRACE_MS);
  }
  return { partition, runs, exitCode };
}

const count = (stream: StreamResult, status: (code: number) => boolean) =>
  Object.entries(stream.statusCodes)
    .filter(([code]) => status(Number(code)))
    .reduce((sum, [, n]) => sum + n, 0);

function render(ctx: Context, spread: readonly SpreadResult[], fairness: readonly FairnessResult[], quietRate: number, peak: number, fairSeconds: number): string {
  const lines = [
    '## Batch partitioning under full load, events spread uniformly over the tenants',
    '',
    '| BATCH_PARTITION | tenants | events/s | 2xx / non-2xx / errors | HTTP p50 / p99 ms | commits/event | mean batch | batch latency p50 / p99 ms | flush reasons | shed (ingest_shed_total by reason) |',
    '| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | --- |',
  ];
  for (const r of spread) {
    lines.push(
      `| ${r.partition} | ${fmt(r.tenants)} | ${fmt(r.eventsPerSecond)} | ${fmt(r.ok2xx)} / ${fmt(r.non2xx)} / ${fmt(r.errors)} | ${ms(r.p50Ms)} / ${ms(r.p99Ms)} | ${perEventText(r.commitsPerEvent)} | ${fmt(r.batching.meanSize, 1)} | ${fmt(r.batching.latencyP50Ms, 1)} / ${fmt(r.batching.latencyP99Ms, 1)} | ${r.batching.flushReasons} | ${r.shed} |`,
    );
  }
  lines.push(
    '',
    `## Fairness: one noisy tenant at ${NOISE_FACTOR}× two quiet ones, open loop, ${fairSeconds} s per run`,
    '',
    `Rates: quiet ${fmt(quietRate)}/s each, noisy ${fmt(quietRate * NOISE_FACTOR)}/s; offered total ${fmt(quietRate * (NOISE_FACTOR + 2))}/s against a measured peak of ${fmt(peak)} events/s (the best full-load row above with 10 tenants) = ${((quietRate * (NOISE_FACTOR + 2)) / peak).toFixed(2)}× peak.`,
    '',
    '| BATCH_PARTITION | run | tenant | offered /s | sent | 202 | 429 | other (status, errors, timeouts, unanswered) | p50 / p99 ms of 202s | shed (service-wide, by reason) | batch latency p50 / p99 ms |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: |',
  );
  for (const f of fairness) {
    for (const run of f.runs) {
      for (const s of run.streams) {
        const ok = count(s, (c) => c >= 200 && c < 300);
        const shed = count(s, (c) => c === 429);
        const otherStatus = count(s, (c) => !(c >= 200 && c < 300) && c !== 429);
        const other = `${fmt(otherStatus)}, ${fmt(s.errors)}, ${fmt(s.timeouts)}, ${fmt(s.unanswered)}`;
        lines.push(
          `| ${f.partition} | ${run.run} | ${s.name} | ${fmt(s.ratePerSecond)} | ${fmt(s.sent)} | ${fmt(ok)} | ${fmt(shed)} | ${other} | ${ms(s.latency.p50)} / ${ms(s.latency.p99)} | ${run.shed} | ${fmt(run.batching.latencyP50Ms, 1)} / ${fmt(run.batching.latencyP99Ms, 1)} |`,
        );
      }
    }
  }
  lines.push('', '### Quiet tenants: alone vs beside the noisy one', '', '| BATCH_PARTITION | tenant | p50 alone → with noisy (ms) | p99 alone → with noisy (ms) | 429s with noisy | latency unchanged? (p99 within 2× and +5 ms, no 429) |', '| --- | --- | ---: | ---: | ---: | --- |');
  for (const f of fairness) {
    const alone = f.runs.find((r) => r.run === 'quiet alone');
    const mixed = f.runs.find((r) => r.run === 'noisy + quiet');
    if (!alone || !mixed) continue;
    for (const a of alone.streams) {
      const m = mixed.streams.find((s) => s.name === a.name);
      if (!m) continue;
      const shed = count(m, (c) => c === 429);
      const unchanged = m.latency.p99 <= Math.max(2 * a.latency.p99, a.latency.p99 + 5) && shed === 0;
      lines.push(
        `| ${f.partition} | ${a.name} | ${ms(a.latency.p50)} → ${ms(m.latency.p50)} | ${ms(a.latency.p99)} → ${ms(m.latency.p99)} | ${fmt(shed)} | ${passText(unchanged)} |`,
      );
    }
  }
  const exits = [...spread.map((r) => `${r.partition}/${r.tenants}: ${r.exitCode}`), ...fairness.map((f) => `fairness ${f.partition}: ${f.exitCode}`)].join(', ');
  const storedOk = spread.every((r) => r.stored === r.ok2xx);
  lines.push(
    '',
    '## Method',
    '',
    `- The service (src/server.ts, AUTH=off, LOG_LEVEL=warn, QUEUE_CAPACITY and everything else at its defaults or from the environment; DURABILITY=${process.env.DURABILITY ?? 'wal (default)'}) is started afresh, on a fresh migrated database and DATA_DIR, for each row of the first table and for each partition mode of the fairness runs.`,
    `- Full load: autocannon, closed loop, ${ctx.options.connections} connections, a timed ${ctx.options.warmupSeconds} s warm-up then a run counted to rate × ${ctx.options.durationSeconds} answers. Bodies are the benchmark's events with \`tenant\` set round robin to tenant-0 … tenant-(N−1) (lib/bodies.ts); each connection starts at its own offset in that list, so at any moment the connections cover all tenants rather than walking through them in step.`,
    '- commits/event: transaction ids taken in PostgreSQL per stored event (pg_current_snapshot() xmax before and after, read from the admin database; every write transaction takes one), as run-bench measures them. Mean batch = Δ ingest_batch_size _sum / _count; batch latency (accepted → committed) is interpolated from ingest_batch_latency_seconds buckets; flush reasons are shares of Δ ingest_flushes_total{reason} (`partitions`: sealed early because BATCH_MAX_OPEN_PARTITIONS batches were open).',
    `- Fairness: the generators/load-streams.ts generator runs one open-loop paced stream per tenant in one process (lib/paced.ts: request i due at start + i/rate, latency from when it was due, one request in flight per connection; noisy 64 connections, each quiet one 32). After a ${ctx.options.warmupSeconds} s warm-up with the same three tenants (so no other tenant counts as active for the fair shares), the two quiet tenants run alone for ${fairSeconds} s, then all three together for ${fairSeconds} s. Counts cover the whole run; p50/p99 are of 202 answers only. Requests a stream could not send or get answered within 5 s of its end are "unanswered". The noisy stream's latency includes the time its requests waited in the generator for a free connection (it is offered more than the service takes).`,
    `- Rates: quiet = max(${MIN_QUIET_RATE}, ⌈${OVERLOAD} × peak / ${NOISE_FACTOR + 2}⌉ rounded up to 10)/s, noisy = ${NOISE_FACTOR}× quiet, where peak is this run's best 10-tenant full-load events/s (the calibration).`,
    `- "Latency unchanged" is judged per quiet tenant: p99 beside the noisy tenant ≤ max(2 × p99 alone, p99 alone + 5 ms) and no 429.`,
    `- Every event stored? ${storedOk ? 'in every full-load run, Δ ingest_events_stored_total == 2xx answers' : `MISMATCH: ${spread.map((r) => `${r.partition}/${r.tenants} ${r.stored} stored vs ${r.ok2xx} 2xx`).join(', ')}`}. Exit codes after SIGTERM: ${exits}.`,
  );
  return lines.join('\n');
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: {
    duration: { default: 8, min: 1, max: 30 },
    warmup: { default: 3, min: 1, max: 10 },
    connections: { default: 64, min: 1, max: 512 },
    'fair-duration': { default: 10, min: 1, max: 60 },
  },
});
const options: BenchOptions = {
  cpuProf: false,
  durationSeconds: args.duration,
  warmupSeconds: args.warmup,
  connections: args.connections,
  rateConnections: 32,
  lowRate: 0,
};
const fairSeconds = args['fair-duration'];
await runScenario(
  'tenants',
  options,
  `load generator in its own process; full load ${options.connections} connections closed loop (autocannon), ${options.durationSeconds} s per run after a ${options.warmupSeconds} s warm-up; fairness open loop (paced), ${fairSeconds} s per run; loopback only`,
  async (ctx) => {
    const spread: SpreadResult[] = [];
    // Same tenant count back to back, so the pair compared saw the most similar machine.
    for (const tenants of TENANT_COUNTS) for (const partition of PARTITIONS) spread.push(await runSpread(ctx, partition, tenants));
    const peak = Math.max(...spread.filter((r) => r.tenants === 10).map((r) => r.eventsPerSecond));
    const quietRate = Math.max(MIN_QUIET_RATE, Math.ceil((OVERLOAD * peak) / (NOISE_FACTOR + 2) / 10) * 10);
    const fairness: FairnessResult[] = [];
    for (const partition of PARTITIONS) fairness.push(await runFairness(ctx, partition, quietRate, fairSeconds));
    return { markdown: render(ctx, spread, fairness, quietRate, peak, fairSeconds), json: { spread, quietRate, peak, fairness } };
  },
);
