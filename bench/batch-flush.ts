/**
 * `npm run bench:flush [-- --duration=S] [--warmup=S] [--connections=N] [--trickle=R] [--trickle-duration=S] [--steady=R]`
 *
 * BATCH_FLUSH=natural against BATCH_FLUSH=window (the 200 ms linger), for ACK_MODE=committed and
 * ACK_MODE=queued (DURABILITY=wal both), one service per combination on a fresh database, under
 * the same three loads: full load (closed loop, 64 connections, counted), a trickle (open loop,
 * 50 events/s) and a steady rate (open loop, 1000 events/s). Prints Markdown tables, the
 * committed-mode targets (issue 12 §3) and the method; every child is killed at the end.
 */
import { createModeDatabase } from './lib/database.ts';
import { SERVER_STOP_GRACE_MS, progress, warmUp, type BenchOptions, type Context } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { stopChild } from './lib/processes.ts';
import { fmt, measureServiceRun, ms, passText, runScenario, startIngestService } from './lib/scenario.ts';
import { runFigures, type RunFigures } from './lib/run-figures.ts';
import { perEventText } from './lib/report.ts';
import type { LoadOptions } from './generators/load.ts';

interface Combination {
  readonly id: string;
  readonly ackMode: 'committed' | 'queued';
  readonly flush: 'natural' | 'window';
}

const COMBINATIONS: readonly Combination[] = [
  { id: 'committed-window', ackMode: 'committed', flush: 'window' },
  { id: 'committed-natural', ackMode: 'committed', flush: 'natural' },
  { id: 'queued-window', ackMode: 'queued', flush: 'window' },
  { id: 'queued-natural', ackMode: 'queued', flush: 'natural' },
];

/** Open-loop connections: opened only as requests are in flight. */
const PACED_CONNECTIONS = 128;

interface CombinationResult {
  readonly combination: Combination;
  readonly runs: readonly RunFigures[];
  readonly exitCode: number | null;
}

interface Rates {
  readonly trickle: number;
  readonly trickleSeconds: number;
  readonly steady: number;
}

async function runCombination(ctx: Context, combination: Combination, rates: Rates): Promise<CombinationResult> {
  const db = await createModeDatabase(ctx.server, combination.id.replace('-', '_'));
  const env = { DURABILITY: 'wal', ACK_MODE: combination.ackMode, BATCH_FLUSH: combination.flush };
  progress(`${combination.id}: starting the service on ${db.name}`);
  const server = await startIngestService(ctx, db, `service-${combination.id}`, env);
  const runs: RunFigures[] = [];
  let exitCode: number | null = null;
  try {
    const { measured } = await warmUp(ctx, combination.id, `${server.baseUrl}/event`);
    runs.push(runFigures(`full load, ${ctx.options.connections} connections`, await measureServiceRun(ctx, db, server, `${combination.id}-full`, measured)));
    for (const rate of [rates.trickle, rates.steady]) {
      const paced: LoadOptions = {
        url: `${server.baseUrl}/event`,
        connections: PACED_CONNECTIONS,
        // The trickle runs longer: at 50/s, 5 s hold 250 answers and their p99 is the 3rd slowest.
        durationSeconds: rate === rates.trickle ? rates.trickleSeconds : ctx.options.durationSeconds,
        overallRate: rate,
        rateGenerator: 'paced',
      };
      runs.push(runFigures(`${rate}/s open loop`, await measureServiceRun(ctx, db, server, `${combination.id}-${rate}`, paced)));
    }
  } finally {
    exitCode = await stopChild(server.child, SERVER_STOP_GRACE_MS);
    if (exitCode !== 0) progress(`WARNING: ${combination.id} exited with code ${exitCode}`);
  }
  return { combination, runs, exitCode };
}

function render(ctx: Context, results: readonly CombinationResult[], rates: Rates): string {
  const lines = [
    '## BATCH_FLUSH natural vs window (DURABILITY=wal)',
    '',
    '| ACK_MODE | BATCH_FLUSH | load | events/s | 2xx / not 2xx | HTTP p50 / p99 / max ms | commits/event | mean batch | batch latency p50 / p99 ms | WAL fsync p99 ms | generator lag p99 ms | flush reasons | server CPU ms per 1k events |',
    '| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
  ];
  for (const { combination, runs } of results) {
    for (const run of runs) {
      lines.push(
        `| ${combination.ackMode} | ${combination.flush} | ${run.load} | ${fmt(run.eventsPerSecond)} | ${fmt(run.ok2xx)} / ${fmt(run.notOk)} | ${ms(run.p50Ms)} / ${ms(run.p99Ms)} / ${ms(run.maxMs)} | ${perEventText(run.commitsPerEvent)} | ${fmt(run.batching.meanSize, 1)} | ${fmt(run.batching.latencyP50Ms, 1)} / ${fmt(run.batching.latencyP99Ms, 1)} | ${fmt(run.walFsyncP99Ms, 1)} | ${fmt(run.generatorLagP99Ms, 1)} | ${run.batching.flushReasons} | ${fmt(run.serverCpuMsPer1k)} |`,
      );
    }
  }
  const committedNatural = results.find((r) => r.combination.id === 'committed-natural');
  lines.push('', '## Targets (issue 12 §3, ACK_MODE=committed, BATCH_FLUSH=natural)', '', '| target | measured | result |', '| --- | --- | --- |');
  if (committedNatural) {
    const [full, trickle] = committedNatural.runs;
    if (full) {
      lines.push(`| ≥ 3,000 events/s with ${ctx.options.connections} connections, closed loop | ${fmt(full.eventsPerSecond)} events/s, ${fmt(full.notOk)} not 2xx | ${passText(full.eventsPerSecond >= 3000 && full.notOk === 0)} |`);
    }
    if (trickle) {
      lines.push(`| HTTP p99 ≤ 25 ms at ${rates.trickle} events/s, open loop | p99 ${ms(trickle.p99Ms)} ms (p50 ${ms(trickle.p50Ms)}), ${fmt(trickle.notOk)} not 2xx | ${passText(trickle.p99Ms <= 25 && trickle.notOk === 0)} |`);
    }
  }
  const integrity = results.map(({ combination, runs, exitCode }) => {
    const mismatched = runs.filter((run) => run.stored !== run.ok2xx);
    return `${combination.id}: ${mismatched.length === 0 ? 'stored == 2xx in every run' : `MISMATCH in ${mismatched.map((run) => `${run.load} (${run.stored} stored vs ${run.ok2xx} 2xx)`).join(', ')}`}; exit code ${exitCode}`;
  });
  lines.push(
    '',
    '## Method',
    '',
    `- One service (src/server.ts, AUTH=off, LOG_LEVEL=warn, DURABILITY=wal, other settings at their defaults or from the environment) per ACK_MODE × BATCH_FLUSH, each on a fresh migrated database and DATA_DIR, one after the other, against one embedded PostgreSQL (fsync on).`,
    `- Full load: autocannon, closed loop, ${ctx.options.connections} connections; a ${ctx.options.warmupSeconds} s warm-up gives the rate and the measured run stops after rate × ${ctx.options.durationSeconds} answers. ${rates.trickle}/s for ${rates.trickleSeconds} s and ${rates.steady}/s for ${ctx.options.durationSeconds} s: the open-loop paced generator (lib/paced.ts), after 2 s at the same rate, latency from when each request was due.`,
    '- commits/event: transaction ids taken per stored event (pg_current_snapshot() xmax). Batch latency (accepted → committed) interpolated from ingest_batch_latency_seconds buckets; flush reasons from ingest_flushes_total.',
    '- ACK_MODE=committed answers 201 only after the batch holding the event committed; ACK_MODE=queued answers 202 after the write-ahead log fsync.',
    `- Every event stored? ${integrity.join('; ')}.`,
  );
  return lines.join('\n');
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: {
    duration: { default: 5, min: 1, max: 30 },
    warmup: { default: 2, min: 1, max: 10 },
    connections: { default: 64, min: 1, max: 512 },
    trickle: { default: 50, min: 1, max: 100_000 },
    'trickle-duration': { default: 20, min: 1, max: 120 },
    steady: { default: 1000, min: 1, max: 100_000 },
  },
});
const rates: Rates = { trickle: args.trickle, trickleSeconds: args['trickle-duration'], steady: args.steady };
const options: BenchOptions = {
  cpuProf: false,
  durationSeconds: args.duration,
  warmupSeconds: args.warmup,
  connections: args.connections,
  rateConnections: PACED_CONNECTIONS,
  lowRate: 0,
};
await runScenario(
  'batch-flush',
  options,
  `load generator in its own process; ${options.connections} connections closed loop (autocannon), ${rates.trickle}/s (${rates.trickleSeconds} s) and ${rates.steady}/s (${options.durationSeconds} s) open loop (paced); loopback only`,
  async (ctx) => {
    const results: CombinationResult[] = [];
    for (const combination of COMBINATIONS) results.push(await runCombination(ctx, combination, rates));
    return { markdown: render(ctx, results, rates), json: results };
  },
);
