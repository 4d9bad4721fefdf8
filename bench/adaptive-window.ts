/**
 * `npm run bench:adaptive [-- --duration=S] [--warmup=S] [--low=R] [--high=R] [--slo=MS]`
 *
 * BATCH_WINDOW=adaptive against a grid of static windows, in one run, across a low-load and a
 * high-load regime (open loop, paced, ACK_MODE=queued, BATCH_FLUSH=window, DURABILITY=wal): one
 * service per window on a fresh database, each taking the low rate then the high rate. The metric:
 * commits per event at a batch-latency p99 (accepted → committed) within BATCH_LATENCY_SLO_MS.
 * Prints Markdown tables, the comparison with the best static window per regime and across both,
 * and the method; every child is killed at the end.
 */
import { createModeDatabase } from './lib/database.ts';
import { SERVER_STOP_GRACE_MS, progress, runLoadProcess, type BenchOptions, type Context } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { stopChild } from './lib/processes.ts';
import { byLabel } from './lib/prometheus.ts';
import { runFigures, type RunFigures } from './lib/run-figures.ts';
import { fmt, measureServiceRun, ms, passText, runScenario, startIngestService } from './lib/scenario.ts';
import { perEventText } from './lib/report.ts';
import type { LoadOptions } from './generators/load.ts';

interface WindowSetting {
  readonly id: string;
  readonly label: string;
  readonly env: Record<string, string>;
  readonly adaptive: boolean;
}

const STATIC_GRID: readonly [size: number, waitMs: number][] = [
  [100, 50],
  [250, 100],
  [500, 200],
  [1000, 200],
];

const PACED_CONNECTIONS = 128;

interface RegimeRun extends RunFigures {
  readonly regime: 'low' | 'high';
  readonly rate: number;
  /** ingest_batch_window_decisions_total by reason during the run. */
  readonly decisions: string;
}

interface SettingResult {
  readonly setting: WindowSetting;
  readonly runs: readonly RegimeRun[];
  readonly exitCode: number | null;
}

function decisionsDuring(run: { before: Parameters<typeof byLabel>[0]; after: Parameters<typeof byLabel>[0] }): string {
  const before = byLabel(run.before, 'ingest_batch_window_decisions_total', 'reason');
  return (
    [...byLabel(run.after, 'ingest_batch_window_decisions_total', 'reason')]
      .map(([reason, count]) => [reason, count - (before.get(reason) ?? 0)] as const)
      .filter(([, count]) => count > 0)
      .map(([reason, count]) => `${reason} ${count}`)
      .join(', ') || '—'
  );
}

async function runSetting(ctx: Context, setting: WindowSetting, rates: { low: number; high: number }): Promise<SettingResult> {
  const db = await createModeDatabase(ctx.server, setting.id);
  progress(`${setting.label}: starting the service on ${db.name}`);
  const server = await startIngestService(ctx, db, `service-${setting.id}`, setting.env);
  const runs: RegimeRun[] = [];
  let exitCode: number | null = null;
  try {
    for (const regime of ['low', 'high'] as const) {
      const rate = rates[regime];
      const paced: LoadOptions = {
        url: `${server.baseUrl}/event`,
        connections: PACED_CONNECTIONS,
        durationSeconds: ctx.options.durationSeconds,
        overallRate: rate,
        rateGenerator: 'paced',
        warmupSeconds: 1,
      };
      // Unmeasured time at the rate first: the adaptive window moves to it, the static ones fill their pipes.
      await runLoadProcess(ctx, `${setting.id}-${regime}-warmup`, { ...paced, durationSeconds: ctx.options.warmupSeconds });
      const run = await measureServiceRun(ctx, db, server, `${setting.id}-${regime}`, paced);
      runs.push({ ...runFigures(`${regime}: ${rate}/s open loop`, run), regime, rate, decisions: decisionsDuring(run) });
    }
  } finally {
    exitCode = await stopChild(server.child, SERVER_STOP_GRACE_MS);
    if (exitCode !== 0) progress(`WARNING: ${setting.label} exited with code ${exitCode}`);
  }
  return { setting, runs, exitCode };
}

/** Among `candidates`, the run with the fewest commits per event whose batch p99 is within the SLO. */
function bestWithinSlo(candidates: readonly { setting: WindowSetting; run: RegimeRun }[], sloMs: number) {
  return candidates
    .filter(({ run }) => (run.batching.latencyP99Ms ?? Infinity) <= sloMs && run.notOk === 0)
    .sort((a, b) => a.run.commitsPerEvent - b.run.commitsPerEvent)[0];
}

function render(results: readonly SettingResult[], rates: { low: number; high: number }, sloMs: number, ctx: Context): string {
  const lines = [
    `## Adaptive vs static batch windows (ACK_MODE=queued, BATCH_FLUSH=window, BATCH_LATENCY_SLO_MS=${sloMs})`,
    '',
    '| window | regime | events/s | 2xx / not 2xx | HTTP p99 ms | commits/event | mean batch | batch latency p50 / p99 ms | within SLO | flush reasons | window at the end (size / wait ms) | decisions |',
    '| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |',
  ];
  for (const { setting, runs } of results) {
    for (const run of runs) {
      const within = (run.batching.latencyP99Ms ?? Infinity) <= sloMs;
      lines.push(
        `| ${setting.label} | ${run.load} | ${fmt(run.eventsPerSecond)} | ${fmt(run.ok2xx)} / ${fmt(run.notOk)} | ${ms(run.p99Ms)} | ${perEventText(run.commitsPerEvent)} | ${fmt(run.batching.meanSize, 1)} | ${fmt(run.batching.latencyP50Ms, 1)} / ${fmt(run.batching.latencyP99Ms, 1)} | ${within ? 'yes' : 'no'} | ${run.batching.flushReasons} | ${fmt(run.windowSize)} / ${fmt(run.windowWaitMs)} | ${run.decisions} |`,
      );
    }
  }
  const adaptive = results.find((r) => r.setting.adaptive);
  const statics = results.filter((r) => !r.setting.adaptive);
  lines.push('', '## Adaptive against the best static window', '', '| regime | best static within the SLO (fewest commits/event) | its commits/event · batch p99 | adaptive commits/event · batch p99 | adaptive ≤ best static commits/event, p99 within the SLO |', '| --- | --- | --- | --- | --- |');
  for (const regime of ['low', 'high'] as const) {
    const best = bestWithinSlo(
      statics.flatMap((r) => r.runs.filter((run) => run.regime === regime).map((run) => ({ setting: r.setting, run }))),
      sloMs,
    );
    const mine = adaptive?.runs.find((run) => run.regime === regime);
    const pass = best && mine ? mine.commitsPerEvent <= best.run.commitsPerEvent * 1.02 && (mine.batching.latencyP99Ms ?? Infinity) <= sloMs : undefined;
    lines.push(
      `| ${regime} (${rates[regime]}/s) | ${best?.setting.label ?? 'none within the SLO'} | ${best ? `${perEventText(best.run.commitsPerEvent)} · ${fmt(best.run.batching.latencyP99Ms, 1)} ms` : '—'} | ${mine ? `${perEventText(mine.commitsPerEvent)} · ${fmt(mine.batching.latencyP99Ms, 1)} ms` : '—'} | ${passText(pass)} |`,
    );
  }
  // One static window has to serve both regimes: the one within the SLO in both with the fewest commits overall.
  const bothWithin = statics.filter((r) => r.runs.every((run) => (run.batching.latencyP99Ms ?? Infinity) <= sloMs && run.notOk === 0));
  const totalCommits = (r: SettingResult) => r.runs.reduce((sum, run) => sum + run.commitsPerEvent * run.ok2xx, 0) / r.runs.reduce((sum, run) => sum + run.ok2xx, 0);
  const bestSingle = [...bothWithin].sort((a, b) => totalCommits(a) - totalCommits(b))[0];
  lines.push(
    '',
    `- One static window for both regimes (within the SLO in both, fewest commits per event over both): ${bestSingle ? `${bestSingle.setting.label}, ${perEventText(totalCommits(bestSingle))}` : 'none'}; adaptive over both: ${adaptive ? perEventText(totalCommits(adaptive)) : '—'}.`,
  );
  const integrity = results.map(({ setting, runs, exitCode }) => {
    const bad = runs.filter((run) => run.stored !== run.ok2xx);
    return `${setting.id}: ${bad.length === 0 ? 'stored == 2xx' : `MISMATCH ${bad.map((run) => `${run.regime} ${run.stored}/${run.ok2xx}`).join(', ')}`}; exit ${exitCode}`;
  });
  lines.push(
    '',
    '## Method',
    '',
    `- One service (src/server.ts, AUTH=off, LOG_LEVEL=warn, DURABILITY=wal, ACK_MODE=queued, BATCH_FLUSH=window) per window, each on a fresh database and DATA_DIR, one after the other; each takes ${rates.low}/s then ${rates.high}/s from the open-loop paced generator, a ${ctx.options.warmupSeconds} s run at the rate unmeasured, then (after 1 s more at the rate) ${ctx.options.durationSeconds} s measured. The adaptive service starts from the default window (500 / 200 ms) and keeps its state from the low regime into the high one, as a service would.`,
    '- commits/event: transaction ids per stored event (pg_current_snapshot() xmax) over the measured part. Batch latency p99 (accepted → committed) interpolated from ingest_batch_latency_seconds buckets (…, 0.2, 0.25, 0.3 s …): the SLO is checked on it. The window at the end and the decisions come from ingest_batch_window_size / _wait_seconds and ingest_batch_window_decisions_total.',
    `- Every event stored? ${integrity.join('; ')}.`,
  );
  return lines.join('\n');
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: {
    duration: { default: 6, min: 1, max: 60 },
    warmup: { default: 4, min: 1, max: 30 },
    low: { default: 200, min: 1, max: 100_000 },
    high: { default: 3000, min: 1, max: 100_000 },
    slo: { default: 250, min: 1, max: 60_000 },
  },
});
const rates = { low: args.low, high: args.high };
const settings: WindowSetting[] = [
  ...STATIC_GRID.map(([size, waitMs]) => ({
    id: `static_${size}_${waitMs}`,
    label: `static ${size} / ${waitMs} ms`,
    env: { ACK_MODE: 'queued', BATCH_FLUSH: 'window', BATCH_WINDOW: 'static', BATCH_MAX_SIZE: String(size), BATCH_MAX_WAIT_MS: String(waitMs) },
    adaptive: false,
  })),
  {
    id: 'adaptive',
    label: 'adaptive from 500 / 200 ms',
    env: { ACK_MODE: 'queued', BATCH_FLUSH: 'window', BATCH_WINDOW: 'adaptive', BATCH_MAX_SIZE: '500', BATCH_MAX_WAIT_MS: '200', BATCH_LATENCY_SLO_MS: String(args.slo) },
    adaptive: true,
  },
];
const options: BenchOptions = {
  cpuProf: false,
  durationSeconds: args.duration,
  warmupSeconds: args.warmup,
  connections: PACED_CONNECTIONS,
  rateConnections: PACED_CONNECTIONS,
  lowRate: 0,
};
await runScenario(
  'adaptive-window',
  options,
  `load generator in its own process; open loop (paced) at ${rates.low}/s then ${rates.high}/s per window; ${options.warmupSeconds} s warm-up + ${options.durationSeconds} s measured per regime; loopback only`,
  async (ctx) => {
    const results: SettingResult[] = [];
    for (const setting of settings) results.push(await runSetting(ctx, setting, rates));
    return { markdown: render(results, rates, args.slo, ctx), json: results };
  },
);
