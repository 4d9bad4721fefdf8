/**
 * `npm run bench:poison [-- --rate=R] [--duration=S] [--poison-every=N]`
 *
 * Poison isolation against a baseline that retries the whole batch. A CHECK constraint stands in
 * for a schema bug (events whose action is 'legacy.poison' are refused, SQLSTATE 23514); a steady
 * open-loop load carries a trickle of such events. Queue depth is scraped every second from
 * (i) the service as is (a failing batch is halved until the poison is isolated and dead-lettered)
 * and (ii) bench/servers/whole-batch-retry.ts (the same batcher and COPY sink, retrying the whole
 * batch after a fixed delay). Every child process is killed at the end.
 */
import path from 'node:path';
import pg from 'pg';
import { POISON_ACTION } from './lib/bodies.ts';
import { countRows, createModeDatabase, type ModeDatabase } from './lib/database.ts';
import { BENCH_DIR, SERVER_STOP_GRACE_MS, TSX, progress, runLoadProcess, startHttpServer, type BenchOptions, type Context, type HttpServer } from './lib/harness.ts';
import { sleep, stopChild } from './lib/processes.ts';
import { scrape, value, type Scrape } from './lib/prometheus.ts';
import { parseBenchArgs } from './lib/options.ts';
import { lineChart, writeFigure } from './lib/plot.ts';
import { delta, fmt, runScenario, startIngestService, waitForDrain } from './lib/scenario.ts';
import type { LoadResult } from './generators/load.ts';

type Variant = 'isolating' | 'retry';
const LABELS: Record<Variant, string> = {
  isolating: '(i) service as is: halve, dead-letter',
  retry: '(ii) whole-batch retry baseline',
};
/** Seconds sampled after the load ends. */
const TAIL_SECONDS = 3;
const WARMUP_SECONDS = 2;
const RETRY_FIXED_DELAY_MS = 100;
const DEFAULT_RATE = 2000;
const CALIBRATION_SECONDS = 3;

interface Sample {
  readonly second: number;
  readonly depth: number | undefined;
  readonly shed429: number | undefined;
  /** ingest_oldest_unsettled_event_age_seconds: how far behind storage is. */
  readonly lagSeconds: number | undefined;
}

interface VariantResult {
  readonly variant: Variant;
  readonly samples: readonly Sample[];
  readonly load: LoadResult;
  readonly accepted: number;
  readonly deadLettered: number;
  readonly stored: number;
  readonly poisonSplits: number;
  readonly retries: number;
  readonly depthAtEnd: number;
  readonly exitCode: number | null;
  /** pg_stat_database over the database's whole life, read after the server exited. */
  readonly sessions: number;
  readonly rollbacks: number;
}

async function lifeCounters(ctx: Context, db: ModeDatabase): Promise<{ sessions: number; rollbacks: number }> {
  await sleep(500); // the backends have exited: let them publish their counters
  const client = new pg.Client({ connectionString: ctx.server.adminUrl, application_name: 'bench-monitor' });
  await client.connect();
  try {
    const result = await client.query<{ sessions: string; rollbacks: string }>(
      'SELECT sessions::text AS sessions, xact_rollback::text AS rollbacks FROM pg_stat_database WHERE datname = $1',
      [db.name],
    );
    return { sessions: Number(result.rows[0]?.sessions ?? NaN), rollbacks: Number(result.rows[0]?.rollbacks ?? NaN) };
  } finally {
    await client.end();
  }
}

async function addSchemaBug(db: ModeDatabase): Promise<void> {
  const client = new pg.Client({ connectionString: db.url, application_name: 'bench-poison' });
  await client.connect();
  try {
    await client.query(`ALTER TABLE events ADD CONSTRAINT schema_bug CHECK (action <> '${POISON_ACTION}')`);
  } finally {
    await client.end();
  }
}

function startVariant(ctx: Context, db: ModeDatabase, variant: Variant): Promise<HttpServer> {
  if (variant === 'isolating') return startIngestService(ctx, db, 'service-poison', {});
  return startHttpServer(ctx, 'whole-batch-retry', [...TSX, path.join(BENCH_DIR, 'servers', 'whole-batch-retry.ts')], {
    DATABASE_URL: db.url,
    LOG_LEVEL: 'warn',
    DATA_DIR: path.join(ctx.runDir, 'whole-batch-retry-data'),
    METRICS_PORT: '',
    METRICS_ON_PUBLIC_LISTENER: 'true',
    RETRY_FIXED_DELAY_MS: String(RETRY_FIXED_DELAY_MS),
  });
}

const count429 = (metrics: Scrape) => value(metrics, 'ingest_http_responses_total', { route: '/event', status: '429' });

/**
 * The rate to run at: `requested`, or when not given, min(DEFAULT_RATE, half of the service's
 * clean closed-loop peak rounded down to 100), so the service is below capacity before any poison.
 * The closed-loop run also warms the service up.
 */
async function chooseRate(ctx: Context, url: string, requested: number | undefined): Promise<{ rate: number; peak: number | undefined }> {
  const load = await runLoadProcess(ctx, 'isolating-calibration', { url, connections: 64, durationSeconds: CALIBRATION_SECONDS });
  // 2xx over the whole run (cold start included): autocannon's best second would count 429s too.
  const peak = load.ok2xx / load.durationSeconds;
  if (requested !== undefined) return { rate: requested, peak };
  return { rate: Math.max(100, Math.min(DEFAULT_RATE, Math.floor(peak / 2 / 100) * 100)), peak };
}

async function runVariant(
  ctx: Context,
  variant: Variant,
  requestedRate: number | undefined,
  seconds: number,
  poisonEvery: number,
): Promise<VariantResult & { rate: number; peak: number | undefined }> {
  const db = await createModeDatabase(ctx.server, `poison_${variant}`);
  await addSchemaBug(db);
  progress(`${LABELS[variant]}: starting on ${db.name} (CHECK (action <> '${POISON_ACTION}') added)`);
  const server = await startVariant(ctx, db, variant);
  const metricsUrl = `${server.baseUrl}/metrics`;
  const url = `${server.baseUrl}/event`;
  let exitCode: number | null;
  let result: Omit<VariantResult, 'exitCode' | 'stored' | 'sessions' | 'rollbacks'>;
  let storedBefore: number;
  let rate = requestedRate ?? DEFAULT_RATE;
  let peak: number | undefined;
  try {
    if (variant === 'isolating') ({ rate, peak } = await chooseRate(ctx, url, requestedRate));
    // Clean events first (JIT, connections); they all commit in both variants.
    await runLoadProcess(ctx, `${variant}-warmup`, { url, connections: 32, durationSeconds: WARMUP_SECONDS, overallRate: rate, rateGenerator: 'paced', warmupSeconds: 0 });
    const before = await waitForDrain(metricsUrl);
    storedBefore = await countRows(db);
    progress(`${LABELS[variant]}: ${rate}/s for ${seconds} s, 1 in ${poisonEvery} poison`);
    const started = Date.now();
    const loading = runLoadProcess(ctx, `${variant}-poison`, {
      url,
      connections: 32,
      durationSeconds: seconds,
      overallRate: rate,
      rateGenerator: 'paced',
      warmupSeconds: 0,
      variant: { poisonEvery },
    });
    let loadDone = false;
    loading.then(
      () => (loadDone = true),
      () => (loadDone = true),
    );
    const samples: Sample[] = [];
    for (let second = 1; second <= seconds + TAIL_SECONDS || !loadDone; second++) {
      await sleep(Math.max(0, started + second * 1000 - Date.now()));
      const metrics = await scrape(metricsUrl).catch(() => undefined);
      samples.push({
        second,
        depth: metrics && value(metrics, 'ingest_queue_depth'),
        shed429: metrics && count429(metrics) - count429(before),
        lagSeconds: metrics && value(metrics, 'ingest_oldest_unsettled_event_age_seconds'),
      });
      if (second > seconds + 60) throw new Error('the load generator did not finish within a minute of its end');
    }
    const load = await loading;
    // The service settles every event (stored or dead-lettered); the baseline never will.
    const after = variant === 'isolating' ? await waitForDrain(metricsUrl) : await scrape(metricsUrl);
    result = {
      variant,
      samples,
      load,
      accepted: delta(after, before, 'ingest_events_accepted_total'),
      deadLettered: delta(after, before, 'ingest_events_dead_lettered_total'),
      poisonSplits: delta(after, before, 'ingest_poison_splits_total'),
      retries: delta(after, before, 'ingest_retries_total'),
      depthAtEnd: value(after, 'ingest_queue_depth'),
    };
  } finally {
    exitCode = await stopChild(server.child, SERVER_STOP_GRACE_MS);
  }
  const stored = (await countRows(db)) - storedBefore;
  return { ...result, stored, exitCode, ...(await lifeCounters(ctx, db)), rate, peak };
}

const statusCount = (load: LoadResult, test: (status: number) => boolean) =>
  Object.entries(load.statusCodes)
    .filter(([status]) => test(Number(status)))
    .reduce((sum, [, n]) => sum + n, 0);

function render(results: readonly VariantResult[], rate: number, peak: number | undefined, requested: boolean, seconds: number, poisonEvery: number): string {
  const isolating = results.find((r) => r.variant === 'isolating');
  const retry = results.find((r) => r.variant === 'retry');
  const rows = Math.max(isolating?.samples.length ?? 0, retry?.samples.length ?? 0);
  const cell = (n: number | undefined) => (n === undefined ? '—' : fmt(n));
  const lines = [
    `## Queue depth under ${fmt(rate)} events/s with 1 in ${poisonEvery} poison (ingest_queue_depth, scraped every second)`,
    '',
    '| time (s) | depth (isolating) | depth (whole-batch retry) | lag s (isolating) | lag s (whole-batch retry) | 429s so far (isolating) | 429s so far (whole-batch retry) |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (let i = 0; i < rows; i++) {
    const a = isolating?.samples[i];
    const b = retry?.samples[i];
    const second = a?.second ?? b?.second ?? i + 1;
    const lag = (n: number | undefined) => (n === undefined ? '—' : n.toFixed(2));
    lines.push(
      `| ${second}${second > seconds ? ' (load over)' : ''} | ${cell(a?.depth)} | ${cell(b?.depth)} | ${lag(a?.lagSeconds)} | ${lag(b?.lagSeconds)} | ${cell(a?.shed429)} | ${cell(b?.shed429)} |`,
    );
  }
  lines.push(
    '',
    '## Totals over the poisoned run',
    '',
    '| server | sent | 202 | 429 | other non-2xx / errors | accepted | stored | dead-lettered | accepted, never settled | poison splits | whole-batch retries | DB sessions / rollbacks (database life) | exit code |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of results) {
    const ok = statusCount(r.load, (s) => s >= 200 && s < 300);
    const shed = statusCount(r.load, (s) => s === 429);
    const other = statusCount(r.load, (s) => !(s >= 200 && s < 300) && s !== 429);
    const unsettled = r.accepted - r.stored - r.deadLettered;
    lines.push(
      `| ${LABELS[r.variant]} | ${fmt(r.load.sent)} | ${fmt(ok)} | ${fmt(shed)} | ${fmt(other)} / ${fmt(r.load.errors + r.load.timeouts)} | ${fmt(r.accepted)} | ${fmt(r.stored)} | ${fmt(r.deadLettered)} | ${fmt(unsettled)} | ${fmt(r.poisonSplits)} | ${fmt(r.retries)} | ${fmt(r.sessions)} / ${fmt(r.rollbacks)} | ${r.exitCode} |`,
    );
  }
  const poisonSent = (r: VariantResult) => Math.floor(r.load.sent / poisonEvery);
  lines.push(
    '',
    '## Method',
    '',
    `- Each server gets a fresh migrated database with \`ALTER TABLE events ADD CONSTRAINT schema_bug CHECK (action <> '${POISON_ACTION}')\` (SQLSTATE 23514, class 23: a permanent failure for the service). The two run one after another against one embedded PostgreSQL (fsync on).`,
    `- Rate: ${requested ? `${fmt(rate)}/s as given (--rate)` : `min(${fmt(DEFAULT_RATE)}, half of the service's clean peak rounded down to 100) = ${fmt(rate)}/s`}; the service's clean closed-loop peak (${CALIBRATION_SECONDS} s, 64 connections, no poison, also its warm-up) was ${fmt(peak)} events/s (2xx / run time, cold start included). The rate must be below what the service drains without poison, or its queue grows for that reason alone.`,
    `- Load: the open-loop paced generator (lib/paced.ts via generators/load.ts, 32 connections) at ${fmt(rate)} events/s for ${seconds} s; body i is poison when (i + 1) % ${poisonEvery} = 0 (lib/bodies.ts), so ${isolating ? fmt(poisonSent(isolating)) : '—'} of the service's and ${retry ? fmt(poisonSent(retry)) : '—'} of the baseline's requests carried poison. Before it, ${WARMUP_SECONDS} s of clean events at the same rate warm each server up; those are left out of every count here.`,
    '- (i) src/server.ts as is (AUTH=off, defaults otherwise: DURABILITY=wal, BATCH_MAX_SIZE 500, BATCH_MAX_WAIT_MS 200, FLUSH_CONCURRENCY 2, QUEUE_CAPACITY 2048, shedding at 80 %): a batch refused for a permanent reason is halved recursively, each half written on its own; an event refused alone goes to the dead-letter queue (fsynced) and counts in ingest_events_dead_lettered_total.',
    `- (ii) bench/servers/whole-batch-retry.ts: the service's own runtime (src/runtime.ts: the same app, batcher, Admission with the same 429 shedding, metrics and COPY sink), same settings, DURABILITY=memory (202 once queued), with the write path replaced: its flush retries the whole batch every ${RETRY_FIXED_DELAY_MS} ms until it commits. A batch holding a poison event never commits, so both flush slots stay stuck and the queue fills to the high-water mark, after which every request is shed.`,
    `- depth = ingest_queue_depth (accepted, not yet settled) scraped at start + k s; lag = ingest_oldest_unsettled_event_age_seconds (age of the oldest accepted event not yet stored or dead-lettered) in the same scrape; 429s so far = Δ ingest_http_responses_total{route="/event",status="429"}. Sampling continues ${TAIL_SECONDS} s after the load ends.`,
    '- DB sessions / rollbacks: pg_stat_database.sessions and xact_rollback of each server\'s database over its whole life (calibration and warm-up included), read after the server exited. Both servers use a pool of 4 connections; after a refused (sub-)batch PostgresCopySink rolls back and keeps its connection, so refusals show as rollbacks, not new sessions.',
    '- sent / 202 / 429 are the generator\'s counts; accepted = Δ ingest_events_accepted_total; dead-lettered = Δ ingest_events_dead_lettered_total; stored = rows in events after the server stopped less rows before the poisoned run (the service drained first; the baseline was stopped with its stuck batches, which its 2 s shutdown deadline abandons: exit code 3). "accepted, never settled" = accepted − stored − dead-lettered: events acknowledged with 202 and lost when the baseline stopped.',
  );
  return lines.join('\n');
}

/** Lag and depth over time, both variants: one panel each. */
function lagFigure(results: readonly VariantResult[]) {
  const data = results.flatMap((r) =>
    r.samples.flatMap((sample) => [
      { t: sample.second, variant: LABELS[r.variant], panel: 'lag: oldest unsettled event age (s)', value: sample.lagSeconds ?? null },
      { t: sample.second, variant: LABELS[r.variant], panel: 'queue depth (events)', value: sample.depth ?? null },
    ]),
  );
  return lineChart({
    name: 'poison-lag',
    title: 'Poison (1 in N events refused by a CHECK): lag and depth over time',
    data,
    x: { field: 't', title: 'time (s)' },
    y: { field: 'value', title: '' },
    series: { field: 'variant', title: 'variant' },
    row: { field: 'panel', title: '' },
    points: true,
  });
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { rate: { min: 1, max: 100_000 }, duration: { default: 20, min: 1, max: 60 }, 'poison-every': { default: 200, min: 2, max: 100_000 } },
});
const requestedRate = args.given.has('rate') ? args.rate : undefined;
const seconds = args.duration;
const poisonEvery = args['poison-every'];
const options: BenchOptions = { cpuProf: false, durationSeconds: seconds, warmupSeconds: WARMUP_SECONDS, connections: 32, rateConnections: 32, lowRate: 0 };
await runScenario(
  'poison',
  options,
  `load generator in its own process; open loop (paced) for ${seconds} s, 1 in ${poisonEvery} poison; loopback only`,
  async (ctx) => {
    const isolating = await runVariant(ctx, 'isolating', requestedRate, seconds, poisonEvery);
    // The baseline runs at the rate chosen for the service.
    const retry = await runVariant(ctx, 'retry', isolating.rate, seconds, poisonEvery);
    const results = [isolating, retry];
    const figure = await writeFigure(ctx.runDir, lagFigure(results));
    const markdown = `${render(results, isolating.rate, isolating.peak, requestedRate !== undefined, seconds, poisonEvery)}\n\nFigure: ${path.basename(figure.svg)} (and .png)`;
    return { markdown, json: results };
  },
);
