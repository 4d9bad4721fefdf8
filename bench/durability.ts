/**
 * `npm run bench:durability [-- --duration=S] [--warmup=S] [--connections=N]`
 *
 * What the write-ahead log costs: the service with DURABILITY=memory, DURABILITY=wal and
 * DURABILITY=wal + ACK_MODE=committed, one after another on fresh databases in one run, under the
 * same load: full load (closed loop, autocannon), then a steady open-loop rate at half of each
 * mode's own peak. Prints a Markdown table, pass/fail for the targets and the method; every child
 * process is killed at the end.
 */
import { parseBenchArgs } from './lib/options.ts';
import { createModeDatabase, type ModeDatabase } from './lib/database.ts';
import { SERVER_STOP_GRACE_MS, progress, warmUp, type BenchOptions, type Context, type HttpServer } from './lib/harness.ts';
import { stopChild } from './lib/processes.ts';
import {
  batching,
  counts,
  delta,
  fmt,
  ms,
  passText,
  runScenario,
  startIngestService,
  measureServiceRun,
  type Batching,
  type ServiceRun,
  type LoadFigures,
} from './lib/scenario.ts';
import { histogram, histogramDelta, quantile } from './lib/prometheus.ts';
import { perEventText } from './lib/report.ts';
import type { LoadOptions } from './generators/load.ts';

interface Mode {
  readonly id: string;
  readonly label: string;
  readonly env: Record<string, string>;
}

const MODES: readonly Mode[] = [
  { id: 'memory', label: 'DURABILITY=memory', env: { DURABILITY: 'memory', ACK_MODE: 'queued' } },
  { id: 'wal', label: 'DURABILITY=wal', env: { DURABILITY: 'wal', ACK_MODE: 'queued' } },
  { id: 'committed', label: 'DURABILITY=wal, ACK_MODE=committed', env: { DURABILITY: 'wal', ACK_MODE: 'committed' } },
];

/** Open-loop connections: only as many are opened as requests are in flight (committed mode holds ~rate × 0.3 s). */
const PACED_CONNECTIONS = 128;
/** Alternating full-load rounds of memory and wal. */
const ROUNDS = 2;

interface RunSummary extends LoadFigures {
  readonly fsyncs: number;
  readonly fsyncSeconds: number;
  readonly grouped: number;
  readonly groups: number;
  readonly wal: boolean;
  readonly durationSeconds: number;
  readonly fsyncsPerEvent: number | undefined;
  readonly meanGroupSize: number | undefined;
  readonly fsyncMeanMs: number | undefined;
  /** From the fsync histogram's buckets (interpolated). */
  readonly fsyncP99Ms: number | undefined;
  readonly commitsPerEvent: number;
  readonly serverCpuMsPer1k: number | undefined;
  readonly generatorLagP99Ms: number | undefined;
  readonly batching: Batching;
  /** ingest_shed_total by reason during the run. */
  readonly shed: string;
}

interface ModeResult {
  readonly mode: Mode;
  /** One per round, in the order run. */
  readonly rounds: readonly RunSummary[];
  /** The rounds together: events/s = Σ 2xx / Σ run time; WAL ratios over all rounds. */
  readonly full: RunSummary;
  readonly halfRate: number;
  readonly half: RunSummary;
  readonly exitCode: number | null;
}

const FSYNC = 'ingest_wal_fsync_duration_seconds';
const msOf = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);

function summarise(run: ServiceRun): RunSummary {
  const { load, before, after } = run;
  const fsyncs = delta(after, before, 'ingest_wal_fsync_duration_seconds_count');
  const fsyncSeconds = delta(after, before, 'ingest_wal_fsync_duration_seconds_sum');
  const grouped = delta(after, before, 'ingest_wal_group_size_sum');
  const groups = delta(after, before, 'ingest_wal_group_size_count');
  const wal = hasWal(after);
  return {
    eventsPerSecond: load.ok2xx / load.durationSeconds,
    ok2xx: load.ok2xx,
    non2xx: load.non2xx,
    errors: load.errors + load.timeouts,
    p50Ms: load.latency.p50,
    p99Ms: load.latency.p99,
    stored: run.stored,
    fsyncs,
    fsyncSeconds,
    grouped,
    groups,
    wal,
    durationSeconds: load.durationSeconds,
    fsyncsPerEvent: wal ? fsyncs / load.ok2xx : undefined,
    meanGroupSize: wal && groups > 0 ? grouped / groups : undefined,
    fsyncMeanMs: wal && fsyncs > 0 ? (fsyncSeconds / fsyncs) * 1000 : undefined,
    fsyncP99Ms: wal ? msOf(quantile(histogramDelta(histogram(after, FSYNC), histogram(before, FSYNC)), 0.99)) : undefined,
    commitsPerEvent: run.perEvent.commits,
    serverCpuMsPer1k: run.cpu.serverMs === undefined ? undefined : (run.cpu.serverMs / load.ok2xx) * 1000,
    generatorLagP99Ms: load.generatorLagP99Ms,
    batching: batching(after, before),
    shed: counts(after, before, 'ingest_shed_total', 'reason'),
  };
}

/** Whether the process has a write-ahead log at all (memory mode registers the histogram but never observes it). */
function hasWal(scrape: ServiceRun['after']): boolean {
  return scrape.some((sample) => sample.name === 'ingest_wal_group_size_count' && sample.value > 0);
}

/** The full-load rounds as one: sums of counts and times, ratios recomputed, latency of the slowest round. */
function combine(rounds: readonly RunSummary[]): RunSummary {
  const sum = (pick: (r: RunSummary) => number) => rounds.reduce((total, r) => total + pick(r), 0);
  const ok2xx = sum((r) => r.ok2xx);
  const fsyncs = sum((r) => r.fsyncs);
  const groups = sum((r) => r.groups);
  const wal = rounds.some((r) => r.wal);
  const first = rounds[0]!;
  return {
    ...first,
    eventsPerSecond: ok2xx / sum((r) => r.durationSeconds),
    ok2xx,
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    p50Ms: Math.max(...rounds.map((r) => r.p50Ms)),
    p99Ms: Math.max(...rounds.map((r) => r.p99Ms)),
    stored: sum((r) => r.stored),
    fsyncs,
    fsyncSeconds: sum((r) => r.fsyncSeconds),
    grouped: sum((r) => r.grouped),
    groups,
    durationSeconds: sum((r) => r.durationSeconds),
    fsyncsPerEvent: wal ? fsyncs / ok2xx : undefined,
    meanGroupSize: wal && groups > 0 ? sum((r) => r.grouped) / groups : undefined,
    fsyncMeanMs: wal && fsyncs > 0 ? (sum((r) => r.fsyncSeconds) / fsyncs) * 1000 : undefined,
    fsyncP99Ms: wal ? Math.max(...rounds.map((r) => r.fsyncP99Ms ?? 0)) : undefined,
  };
}

interface Started {
  readonly mode: Mode;
  readonly db: ModeDatabase;
  readonly server: HttpServer;
}

/**
 * The modes of one group run side by side: all their services are up at once (an idle one costs
 * nothing), their full-load runs alternate for `rounds` rounds, then each gets its half-peak run.
 */
async function runGroup(ctx: Context, modes: readonly Mode[], rounds: number): Promise<ModeResult[]> {
  const started: Started[] = [];
  const exitCodes = new Map<string, number | null>();
  const results: Omit<ModeResult, 'exitCode'>[] = [];
  try {
    for (const mode of modes) {
      const db = await createModeDatabase(ctx.server, mode.id);
      progress(`${mode.label}: starting the service on ${db.name}`);
      started.push({ mode, db, server: await startIngestService(ctx, db, `service-${mode.id}`, mode.env) });
    }
    const measured = new Map<string, LoadOptions>();
    for (const { mode, server } of started) measured.set(mode.id, (await warmUp(ctx, `${mode.id}`, `${server.baseUrl}/event`)).measured);
    const fulls = new Map<string, RunSummary[]>(started.map(({ mode }) => [mode.id, []]));
    for (let round = 1; round <= rounds; round++) {
      for (const { mode, db, server } of started) {
        fulls.get(mode.id)!.push(summarise(await measureServiceRun(ctx, db, server, `${mode.id}-full-${round}`, measured.get(mode.id)!)));
      }
    }
    for (const { mode, db, server } of started) {
      const full = combine(fulls.get(mode.id)!);
      const halfRate = Math.max(1, Math.floor(full.eventsPerSecond / 2));
      progress(`${mode.label}: ${Math.round(full.eventsPerSecond)} events/s at full load; steady ${halfRate}/s (half of peak), open loop`);
      const paced: LoadOptions = {
        url: `${server.baseUrl}/event`,
        connections: PACED_CONNECTIONS,
        durationSeconds: ctx.options.durationSeconds,
        overallRate: halfRate,
        rateGenerator: 'paced',
      };
      const half = summarise(await measureServiceRun(ctx, db, server, `${mode.id}-half`, paced));
      results.push({ mode, rounds: fulls.get(mode.id)!, full, halfRate, half });
    }
  } finally {
    for (const { mode, server } of started) {
      const code = await stopChild(server.child, SERVER_STOP_GRACE_MS);
      exitCodes.set(mode.id, code);
      if (code !== 0) progress(`WARNING: ${mode.label} exited with code ${code}`);
    }
  }
  return results.map((result) => ({ ...result, exitCode: exitCodes.get(result.mode.id) ?? null }));
}

function render(ctx: Context, results: readonly ModeResult[]): string {
  const memory = results.find((r) => r.mode.id === 'memory');
  const wal = results.find((r) => r.mode.id === 'wal');
  const lines = [
    '## Durability modes, same load',
    '',
    '| mode | full load events/s (rounds) | ÷ memory | full p50 / p99 ms (rounds) | WAL fsyncs/event (full) | mean group size (full) | fsync mean / p99 ms (full) | half-peak rate /s | half-peak p50 / p99 ms | WAL fsyncs/event (half) | mean group size (half) | fsync mean / p99 ms (half) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    const ratio = memory ? `${(r.full.eventsPerSecond / memory.full.eventsPerSecond).toFixed(2)}×` : '—';
    lines.push(
      `| ${r.mode.label} | ${fmt(r.full.eventsPerSecond)} (${r.rounds.map((x) => fmt(x.eventsPerSecond)).join(' · ')}) | ${ratio} | ${r.rounds.map((x) => `${ms(x.p50Ms)} / ${ms(x.p99Ms)}`).join(' · ')} | ${perEventText(r.full.fsyncsPerEvent)} | ${fmt(r.full.meanGroupSize, 1)} | ${fmt(r.full.fsyncMeanMs, 2)} / ${fmt(r.full.fsyncP99Ms, 1)} | ${fmt(r.halfRate)} | ${ms(r.half.p50Ms)} / ${ms(r.half.p99Ms)} | ${perEventText(r.half.fsyncsPerEvent)} | ${fmt(r.half.meanGroupSize, 1)} | ${fmt(r.half.fsyncMeanMs, 2)} / ${fmt(r.half.fsyncP99Ms, 1)} |`,
    );
  }
  lines.push(
    '',
    '### Batches and cost behind those numbers',
    '',
    '| mode | run | 2xx / non-2xx / errors | shed (ingest_shed_total by reason) | stored (Δ ingest_events_stored_total) | commits/event | mean batch | batch latency p50 / p99 ms | flush reasons | server CPU ms per 1k events |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |',
  );
  for (const r of results) {
    for (const [run, s] of [
      ...r.rounds.map((round, index) => [`full load, round ${index + 1}`, round] as const),
      [`steady ${r.halfRate}/s`, r.half] as const,
    ]) {
      lines.push(
        `| ${r.mode.label} | ${run} | ${fmt(s.ok2xx)} / ${fmt(s.non2xx)} / ${fmt(s.errors)} | ${s.shed} | ${fmt(s.stored)} | ${perEventText(s.commitsPerEvent)} | ${fmt(s.batching.meanSize, 1)} | ${fmt(s.batching.latencyP50Ms, 1)} / ${fmt(s.batching.latencyP99Ms, 1)} | ${s.batching.flushReasons} | ${fmt(s.serverCpuMsPer1k)} |`,
      );
    }
  }
  lines.push('', '## Targets', '', '| target | measured | result |', '| --- | --- | --- |');
  if (memory && wal) {
    const ratio = wal.full.eventsPerSecond / memory.full.eventsPerSecond;
    lines.push(
      `| WAL keeps ≥ 80% of memory mode's full-load throughput | ${fmt(wal.full.eventsPerSecond)} vs ${fmt(memory.full.eventsPerSecond)} events/s = ${(ratio * 100).toFixed(0)}% | ${passText(ratio >= 0.8)} |`,
    );
    const rejected = wal.half.non2xx + wal.half.errors;
    lines.push(
      `| WAL p99 < 20 ms at half of its peak (open loop) | p99 ${ms(wal.half.p99Ms)} ms at ${fmt(wal.halfRate)}/s${rejected > 0 ? `; ${rejected} requests not answered 2xx` : ''} | ${passText(wal.half.p99Ms < 20 && rejected === 0)} |`,
    );
  }
  const committed = results.find((r) => r.mode.id === 'committed');
  if (committed) {
    const bound = ctx.options.connections / ((committed.full.batching.latencyP50Ms ?? NaN) / 1000);
    lines.push(
      `| (reported, no target) ACK_MODE=committed | ${fmt(committed.full.eventsPerSecond)} events/s; ${ctx.options.connections} connections / batch latency p50 ${fmt(committed.full.batching.latencyP50Ms, 0)} ms = ${fmt(bound)}/s bound | n/a |`,
    );
  }
  const integrity = results.map((r) => {
    const ok = r.full.stored === r.full.ok2xx && r.half.stored === r.half.ok2xx;
    return `${r.mode.label}: ${ok ? 'stored == 2xx in every run' : `MISMATCH (full ${r.full.stored} stored vs ${r.full.ok2xx} 2xx; half ${r.half.stored} vs ${r.half.ok2xx})`}; exit code ${r.exitCode}`;
  });
  const lags = results.map((r) => `${r.mode.id} ${fmt(r.half.generatorLagP99Ms, 1)} ms`).join(', ');
  lines.push(
    '',
    '## Method',
    '',
    `- The service (src/server.ts, AUTH=off, LOG_LEVEL=warn, other settings at their defaults or from the environment) runs once per mode, each process on a fresh migrated database and a fresh DATA_DIR, against one embedded PostgreSQL (fsync on). memory and wal are up side by side and their full-load runs alternate (memory, wal, memory, wal: ${ROUNDS} rounds), so both see the same machine — other work on it (the test suite) moves the numbers by ±20 % from one run to the next. ACK_MODE=committed runs afterwards, one round.`,
    `- Full load: autocannon, closed loop, ${ctx.options.connections} connections. A timed ${ctx.options.warmupSeconds} s warm-up per mode gives the rate; each measured run then stops after rate × ${ctx.options.durationSeconds} answers, so every request is answered (counted, as in run-bench). events/s = Σ 2xx / Σ run time over the rounds (each round in brackets). p50/p99 are autocannon's, per round.`,
    `- Half of peak: the open-loop paced generator (lib/paced.ts) at ⌊each mode's own full-load events/s / 2⌋ for ${ctx.options.durationSeconds} s after a 2 s warm-up at the same rate, up to ${PACED_CONNECTIONS} keep-alive connections (opened only when needed), latency from when each request was due. Generator send-lag p99: ${lags}.`,
    '- WAL fsyncs/event = Δ ingest_wal_fsync_duration_seconds_count / 2xx answers of the run (one observation per group commit: write + fdatasync). Mean group size = Δ ingest_wal_group_size_sum / Δ its count; fsync mean = Δ _sum / Δ _count of the fsync histogram, fsync p99 interpolated within its buckets (…, 5, 10, 25, 50 ms; the higher of the two rounds for full load). Memory mode has no log: —.',
    '- commits/event: transaction ids taken in PostgreSQL per stored event (pg_current_snapshot() xmax), as run-bench measures them. Batch latency (accepted → committed) is interpolated from ingest_batch_latency_seconds buckets. Server CPU is the service process from /proc, drain included.',
    `- ACK_MODE=committed answers 201 only after the event's batch commits, so each of the ${ctx.options.connections} connections has one event in the batcher at a time: batches hold at most ${ctx.options.connections} events, and throughput is bounded by connections / batch latency. With BATCH_FLUSH=natural (the default with ACK_MODE=committed) a batch leaves as soon as a flush slot is free, so the batch latency is about one write; with BATCH_FLUSH=window it is BATCH_MAX_WAIT_MS (200 ms) plus the write (npm run bench:flush compares them).`,
    `- Every event stored? ${integrity.join('; ')}.`,
  );
  return lines.join('\n');
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { duration: { default: 10, min: 1, max: 30 }, warmup: { default: 3, min: 1, max: 10 }, connections: { default: 64, min: 1, max: 512 } },
});
const options: BenchOptions = {
  cpuProf: false,
  durationSeconds: args.duration,
  warmupSeconds: args.warmup,
  connections: args.connections,
  rateConnections: PACED_CONNECTIONS,
  lowRate: 0,
};
await runScenario(
  'durability',
  options,
  `load generator in its own process; ${options.connections} connections closed loop for full load (autocannon), open loop (paced) at half of each mode's peak; ${options.durationSeconds} s per run after a ${options.warmupSeconds} s warm-up; loopback only`,
  async (ctx) => {
    const results: ModeResult[] = [];
    results.push(...(await runGroup(ctx, MODES.slice(0, 2), ROUNDS)));
    results.push(...(await runGroup(ctx, MODES.slice(2), 1)));
    return { markdown: render(ctx, results), json: results };
  },
);
