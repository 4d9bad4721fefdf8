/**
 * `npm run bench:adaptive [-- --phase=S] [--settle=S] [--low=R] [--high=R] [--rtt=MS] [--slo=MS] [--seed=N]`
 *
 * BATCH_WINDOW=adaptive against a grid of static windows, in one run, through four regimes one
 * after another in one replay per window (ACK_MODE=queued, BATCH_FLUSH=window, DURABILITY=wal):
 *   1. low load, fast database      (--low events/s, PostgreSQL direct)
 *   2. low load, slow database      (every round trip to PostgreSQL + --rtt ms, a TCP proxy)
 *   3. high load, slow database     (--high events/s)
 *   4. high load, fast database again
 * so the database slows, the load steps up, and the database recovers, each while the service
 * runs. A static window is chosen once for all of it; the adaptive one starts from the design
 * card's 500 / 200 ms. One service per window on a fresh database; the same seeded Poisson
 * arrival schedule for every window; the proxy's delay switched at the same schedule times.
 *
 * The metric: in each regime, accepted → committed p99 within BATCH_LATENCY_SLO_MS (at least 99 %
 * of events committed within it, read exactly off the histogram's 0.25 s bucket), and commits
 * per event (one transaction per batch write). "Beats": within the SLO in every regime with no
 * more commits per event over the run than the best static window — the one static window, of
 * those within the SLO in every regime, with the fewest commits per event over the run (an
 * operator has to pick one). Prints the tables, writes the figure (SVG + PNG) next to them.
 */
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { seededRandom, type Arrival, type Schedule } from './generators/bursty-schedule.ts';
import { createModeDatabase, type ModeDatabase } from './lib/database.ts';
import { DelayingProxy } from './lib/delaying-proxy.ts';
import { SERVER_STOP_GRACE_MS, measureDatabase, progress, type BenchOptions, type Context } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { lineChart, writeFigure, figureLinks } from './lib/plot.ts';
import { sleep, stopChild } from './lib/processes.ts';
import { byLabel, histogram, histogramDelta, quantile, scrape, value, type Scrape } from './lib/prometheus.ts';
import { runReplayProcess } from './lib/replay-run.ts';
import { perEventText } from './lib/report.ts';
import { fmt, passText, runScenario, startIngestService, waitForDrain } from './lib/scenario.ts';
import type { ReplayResult } from './generators/replay.ts';

interface WindowSetting {
  readonly id: string;
  readonly label: string;
  readonly env: Record<string, string>;
  readonly adaptive: boolean;
}

interface Phase {
  readonly id: string;
  readonly label: string;
  readonly rate: number;
  readonly rttMs: number;
}

/** Static windows: the design card's default, and the wait swept at a size that only a full load fills. */
const STATIC_GRID: readonly [size: number, waitMs: number][] = [
  [500, 200],
  [1000, 200],
  [1000, 100],
  [1000, 50],
];

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: {
    phase: { default: 6.5, min: 3, max: 60 },
    settle: { default: 2.5, min: 0, max: 30 },
    low: { default: 200, min: 1, max: 100_000 },
    high: { default: 3000, min: 1, max: 100_000 },
    rtt: { default: 20, min: 0, max: 1000 },
    slo: { default: 250, min: 1, max: 60_000 },
    seed: { default: 12, min: 0, max: 1_000_000 },
  },
});

const PHASES: readonly Phase[] = [
  { id: 'low-fast', label: `${args.low}/s, fast DB`, rate: args.low, rttMs: 0 },
  { id: 'low-slow', label: `${args.low}/s, slow DB (+${args.rtt} ms per round trip)`, rate: args.low, rttMs: args.rtt },
  { id: 'high-slow', label: `${args.high}/s, slow DB (+${args.rtt} ms per round trip)`, rate: args.high, rttMs: args.rtt },
  { id: 'high-fast', label: `${args.high}/s, fast DB`, rate: args.high, rttMs: 0 },
];
const PHASE_MS = args.phase * 1000;
const SETTLE_MS = args.settle * 1000;

/** Poisson arrivals of single events at each phase's rate, seeded: the same schedule for every window. */
function stepSchedule(seed: number): Schedule {
  const random = seededRandom(seed);
  const arrivals: Arrival[] = [];
  PHASES.forEach((phase, index) => {
    let t = index * PHASE_MS;
    for (;;) {
      t += (-Math.log(1 - random()) / phase.rate) * 1000;
      if (t >= (index + 1) * PHASE_MS) break;
      arrivals.push({ atMs: t, events: 1, burst: -1 });
    }
  });
  return {
    options: {
      seed,
      durationSeconds: (PHASES.length * PHASE_MS) / 1000,
      troughPerSecond: args.low,
      peakPerSecond: args.high,
      burstsPerSecondAtPeak: 0,
      burstEvents: 0,
      burstRequestEvents: 1,
      burstSpreadMs: 0,
    },
    arrivals,
    burstStartsMs: [],
  };
}

interface PhaseFigures {
  readonly phase: Phase;
  readonly events: number;
  readonly batches: number;
  readonly retries: number;
  readonly commitsPerEvent: number;
  readonly meanBatch: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
  /** Share of the phase's events committed within the SLO (the histogram's bucket at the SLO). */
  readonly withinSlo: number;
  readonly flushReasons: string;
  /** The window at the end of the phase. */
  readonly windowSize: number;
  readonly windowWaitMs: number;
  readonly decisions: string;
  /** Single-event HTTP p99, worst second of the measured part. */
  readonly httpP99Ms: number | undefined;
  readonly refused: number;
}

interface SettingResult {
  readonly setting: WindowSetting;
  readonly phases: readonly PhaseFigures[];
  /** Per second: batch latency p99, events per batch, the window's wait and size. */
  readonly seconds: readonly { second: number; p99Ms: number | null; eventsPerBatch: number | null; waitMs: number; size: number }[];
  readonly replay: ReplayResult;
  /** Transaction ids per stored event over the whole replay (the database's own count). */
  readonly xidsPerEvent: number;
  readonly stored: number;
  readonly exitCode: number | null;
}

const LATENCY = 'ingest_batch_latency_seconds';

function changes(after: Scrape, before: Scrape, name: string, label: string): string {
  const previous = byLabel(before, name, label);
  return (
    [...byLabel(after, name, label)]
      .map(([key, count]) => [key, count - (previous.get(key) ?? 0)] as const)
      .filter(([, count]) => count > 0)
      .map(([key, count]) => `${key} ${count}`)
      .join(', ') || '—'
  );
}

function withinShare(after: Scrape, before: Scrape, sloMs: number): number {
  const h = histogramDelta(histogram(after, LATENCY), histogram(before, LATENCY));
  const total = h.buckets.at(-1)?.count ?? 0;
  const bucket = h.buckets.find((b) => Math.abs(b.le * 1000 - sloMs) < 1e-6);
  if (!bucket) throw new Error(`ingest_batch_latency_seconds has no bucket at the SLO (${sloMs} ms): the share within it cannot be read exactly`);
  return total > 0 ? bucket.count / total : 1;
}

function phaseFigures(phase: Phase, before: Scrape, after: Scrape, replay: ReplayResult, fromSecond: number, toSecond: number): PhaseFigures {
  const d = (name: string) => value(after, name) - value(before, name);
  const latency = histogramDelta(histogram(after, LATENCY), histogram(before, LATENCY));
  const events = d('ingest_events_stored_total') + d('ingest_events_dead_lettered_total') + d('ingest_events_duplicate_total');
  const batches = d('ingest_flushes_total');
  const retries = d('ingest_retries_total');
  const seconds = replay.perSecond.filter((s) => s.second >= fromSecond && s.second < toSecond && s.singleCount > 0);
  // Requests due in the regime (by due time) that did not get a 2xx: the replay counts only 2xx per second.
  const due = replay.perSecond.filter((s) => s.second >= Math.floor((fromSecond * 1000 - SETTLE_MS) / 1000) && s.second < toSecond);
  const refused = due.reduce((sum, s) => sum + s.offered - s.singleCount, 0);
  return {
    phase,
    events,
    batches,
    retries,
    commitsPerEvent: events > 0 ? (batches + retries) / events : NaN,
    meanBatch: batches > 0 ? events / batches : NaN,
    p50Ms: (quantile(latency, 0.5) ?? NaN) * 1000,
    p99Ms: (quantile(latency, 0.99) ?? NaN) * 1000,
    withinSlo: withinShare(after, before, args.slo),
    flushReasons: changes(after, before, 'ingest_flushes_total', 'reason'),
    windowSize: value(after, 'ingest_batch_window_size'),
    windowWaitMs: value(after, 'ingest_batch_window_wait_seconds') * 1000,
    decisions: changes(after, before, 'ingest_batch_window_decisions_total', 'reason'),
    httpP99Ms: seconds.length > 0 ? Math.max(...seconds.map((s) => s.singleP99Ms)) : undefined,
    refused,
  };
}

async function runSetting(ctx: Context, setting: WindowSetting, scheduleFile: string, proxyFor: (db: ModeDatabase) => Promise<{ url: string; proxy: DelayingProxy }>): Promise<SettingResult> {
  const db = await createModeDatabase(ctx.server, setting.id);
  const { url, proxy } = await proxyFor(db);
  progress(`${setting.label}: starting the service on ${db.name} (through the proxy)`);
  const server = await startIngestService(ctx, db, `service-${setting.id}`, { ...setting.env, DATABASE_URL: url });
  const metricsUrl = `${server.baseUrl}/metrics`;
  let exitCode: number | null = null;
  let figures: Omit<SettingResult, 'exitCode'>;
  try {
    const { result, before: counters0, after: counters1 } = await measureDatabase(ctx, db, async () => {
      const start = await waitForDrain(metricsUrl);
      const accepted0 = value(start, 'ingest_events_accepted_total');
      let done = false;
      const replaying = runReplayProcess(ctx, setting.id, { baseUrl: server.baseUrl, scheduleFile, singleConnections: 64 }, PHASES.length * PHASE_MS * 3 + 60_000).finally(
        () => (done = true),
      );
      // The schedule's zero: the first event accepted (the replay process takes a moment to start).
      let t0 = Date.now();
      for (;;) {
        const metrics = await scrape(metricsUrl);
        if (value(metrics, 'ingest_events_accepted_total') > accepted0 || done) break;
        await sleep(20);
        t0 = Date.now();
      }
      // Phase boundaries and whole seconds, in time order: set the proxy's delay at each phase start,
      // scrape at each settle point, phase end and second.
      const marks = new Map<number, Scrape>();
      const times = new Set<number>();
      PHASES.forEach((_, i) => {
        times.add(i * PHASE_MS + SETTLE_MS);
        times.add((i + 1) * PHASE_MS);
      });
      for (let s = 1; s * 1000 <= PHASES.length * PHASE_MS; s++) times.add(s * 1000);
      const phaseStarts = PHASES.map((_, i) => i * PHASE_MS);
      const events = [...new Set([...times, ...phaseStarts])].sort((a, b) => a - b);
      for (const at of events) {
        await sleep(Math.max(0, t0 + at - Date.now()));
        const phaseIndex = phaseStarts.indexOf(at);
        if (phaseIndex >= 0) proxy.rttMs = PHASES[phaseIndex]!.rttMs;
        if (times.has(at)) marks.set(at, await scrape(metricsUrl));
      }
      proxy.rttMs = 0;
      const replay = await replaying;
      const after = await waitForDrain(metricsUrl);
      return { replay, marks, start, after };
    });
    const { replay, marks } = result;
    const phases = PHASES.map((phase, i) => {
      const from = i * PHASE_MS + SETTLE_MS;
      const to = (i + 1) * PHASE_MS;
      return phaseFigures(phase, marks.get(from)!, marks.get(to)!, replay, Math.ceil(from / 1000), Math.floor(to / 1000));
    });
    const seconds: SettingResult['seconds'][number][] = [];
    let previous = result.start;
    for (let s = 1; s * 1000 <= PHASES.length * PHASE_MS; s++) {
      const now = marks.get(s * 1000)!;
      const h = histogramDelta(histogram(now, LATENCY), histogram(previous, LATENCY));
      const p99 = quantile(h, 0.99);
      const batches = value(now, 'ingest_flushes_total') - value(previous, 'ingest_flushes_total');
      const stored = value(now, 'ingest_events_stored_total') - value(previous, 'ingest_events_stored_total');
      seconds.push({
        second: s,
        p99Ms: p99 === undefined ? null : p99 * 1000,
        eventsPerBatch: batches > 0 ? stored / batches : null,
        waitMs: value(now, 'ingest_batch_window_wait_seconds') * 1000,
        size: value(now, 'ingest_batch_window_size'),
      });
      previous = now;
    }
    const stored = value(result.after, 'ingest_events_stored_total') - value(result.start, 'ingest_events_stored_total');
    const refused = Object.entries(replay.statusCodes)
      .filter(([code]) => !code.startsWith('2'))
      .reduce((sum, [, n]) => sum + n, 0);
    if (refused + replay.errors > 0) progress(`WARNING: ${setting.label}: ${refused} answers not 2xx, ${replay.errors} errors`);
    figures = { setting, phases, seconds, replay, xidsPerEvent: (counters1.nextXid - counters0.nextXid) / stored, stored };
  } finally {
    proxy.rttMs = 0;
    exitCode = await stopChild(server.child, SERVER_STOP_GRACE_MS);
    if (exitCode !== 0) progress(`WARNING: ${setting.label} exited with code ${exitCode}`);
    await proxy.stop();
  }
  return { ...figures, exitCode };
}

const within = (p: PhaseFigures) => p.withinSlo >= 0.99 && p.refused === 0;
/** Commits per event over the measured parts of every regime (each regime's events weighted as they came). */
const overall = (r: SettingResult) => r.phases.reduce((sum, p) => sum + p.batches + p.retries, 0) / r.phases.reduce((sum, p) => sum + p.events, 0);
const pct = (share: number) => `${(share * 100).toFixed(1)} %`;
const ms1 = (n: number | undefined) => (n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(0));

function render(results: readonly SettingResult[], figures: string): string {
  const lines = [
    `## Adaptive vs static batch windows over four regimes (ACK_MODE=queued, BATCH_FLUSH=window, BATCH_LATENCY_SLO_MS=${args.slo})`,
    '',
    `Commits per event · accepted → committed p99 ms (share of events within ${args.slo} ms), measured over the last ${fmt(args.phase - args.settle, 1)} s of each ${args.phase} s regime. **Bold**: within the SLO (≥ 99 % within ${args.slo} ms, every request answered 2xx).`,
    '',
    `| window | ${PHASES.map((p) => p.label).join(' | ')} | over the run | within the SLO in every regime |`,
    `| --- | ${PHASES.map(() => '---').join(' | ')} | --- | --- |`,
  ];
  for (const r of results) {
    const cells = r.phases.map((p) => {
      const text = `${perEventText(p.commitsPerEvent).replace(/ \(.*\)/, '')} · ${ms1(p.p99Ms)} (${pct(p.withinSlo)})`;
      return within(p) ? `**${text}**` : text;
    });
    lines.push(`| ${r.setting.label} | ${cells.join(' | ')} | ${perEventText(overall(r)).replace(/ \(.*\)/, '')} | ${r.phases.every(within) ? 'yes' : `no (${r.phases.filter((p) => !within(p)).length} of ${r.phases.length})`} |`);
  }
  const statics = results.filter((r) => !r.setting.adaptive);
  const adaptive = results.find((r) => r.setting.adaptive);
  const candidates = statics.filter((r) => r.phases.every(within)).sort((a, b) => overall(a) - overall(b));
  const best = candidates[0];
  lines.push('', '## Against the best static window', '');
  if (!adaptive) return lines.join('\n');
  const adaptiveWithin = adaptive.phases.every(within);
  if (best) {
    const fewer = 1 - overall(adaptive) / overall(best);
    lines.push(
      `- Best static window (within the SLO in every regime, fewest commits per event over the run): **${best.setting.label}**, ${perEventText(overall(best))}. Adaptive: ${perEventText(overall(adaptive))}, within the SLO in every regime: ${adaptiveWithin ? 'yes' : 'no'}.`,
      `- **Adaptive beats the best static window: ${passText(adaptiveWithin && overall(adaptive) <= overall(best))}** (${(fewer * 100).toFixed(0)} % ${fewer >= 0 ? 'fewer' : 'more'} commits per event, at p99 within the same SLO).`,
    );
  } else {
    lines.push(`- No static window of the grid was within the SLO in every regime. Adaptive within the SLO in every regime: ${adaptiveWithin ? 'yes' : 'no'}, ${perEventText(overall(adaptive))}.`);
  }
  lines.push('', '| regime | best static for this regime alone (within the SLO, fewest commits) | its commits/event · p99 | adaptive commits/event · p99 | adaptive ÷ it | the best static window overall here |', '| --- | --- | --- | --- | ---: | --- |');
  PHASES.forEach((phase, i) => {
    const oracle = statics.filter((r) => within(r.phases[i]!)).sort((a, b) => a.phases[i]!.commitsPerEvent - b.phases[i]!.commitsPerEvent)[0];
    const mine = adaptive.phases[i]!;
    const text = (p: PhaseFigures) => `${perEventText(p.commitsPerEvent).replace(/ \(.*\)/, '')} · ${ms1(p.p99Ms)} ms${within(p) ? '' : ' (over)'}`;
    const chosen = best?.phases[i];
    lines.push(
      `| ${phase.label} | ${oracle?.setting.label ?? 'none'} | ${oracle ? text(oracle.phases[i]!) : '—'} | ${text(mine)} | ${oracle ? (mine.commitsPerEvent / oracle.phases[i]!.commitsPerEvent).toFixed(2) : '—'} | ${chosen ? text(chosen) : '—'} |`,
    );
  });
  lines.push('', '## Detail', '', '| window | regime | events | mean batch | p50 / p99 ms | within | flush reasons | window at the end (size / wait ms) | decisions | HTTP p99 ms (worst second) |', '| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |');
  for (const r of results) {
    for (const p of r.phases) {
      lines.push(
        `| ${r.setting.label} | ${p.phase.label} | ${fmt(p.events)} | ${fmt(p.meanBatch, 1)} | ${ms1(p.p50Ms)} / ${ms1(p.p99Ms)} | ${pct(p.withinSlo)} | ${p.flushReasons} | ${fmt(p.windowSize)} / ${fmt(p.windowWaitMs)} | ${p.decisions} | ${p.httpP99Ms === undefined ? '—' : p.httpP99Ms.toFixed(1)} |`,
      );
    }
  }
  const integrity = results.map((r) => {
    const refused = Object.entries(r.replay.statusCodes).filter(([code]) => !code.startsWith('2'));
    return `${r.setting.id}: ${r.stored} stored of ${r.replay.events} sent, ${r.replay.eventsOk} answered 2xx${refused.length > 0 ? ` (not 2xx: ${JSON.stringify(Object.fromEntries(refused))})` : ''}, ${r.replay.errors} errors, ${(1 / r.xidsPerEvent).toFixed(1)} events per transaction id, exit ${r.exitCode}`;
  });
  lines.push(
    '',
    figures,
    '',
    '## Method',
    '',
    `- One service (src/server.ts, AUTH=off, LOG_LEVEL=warn, DURABILITY=wal, ACK_MODE=queued, BATCH_FLUSH=window, FLUSH_CONCURRENCY=2) per window, one after the other, each on a fresh database reached through a TCP proxy in the bench process (bench/lib/delaying-proxy.ts) that delays every chunk by half the round-trip time each way: 0 ms in the fast regimes, ${args.rtt} ms per round trip in the slow ones (a batch write is ~4 round trips: BEGIN, COPY, its data, COMMIT). Every window replays the same seeded Poisson schedule of single events (seed ${args.seed}; replay generator, 64 keep-alive connections, open loop, latency from the due time): ${PHASES.map((p) => `${p.rate}/s for ${args.phase} s${p.rttMs ? ` (+${p.rttMs} ms RTT)` : ''}`).join(', then ')}. The proxy's delay switches at the regime boundaries, timed from the first accepted event.`,
    `- Per regime, the first ${args.settle} s are a transition (not measured: the adaptive window moves, the static ones drain the previous regime's batches); figures are differences of /metrics between ${args.settle} s into the regime and its end. Commits per event = (ingest_flushes_total + ingest_retries_total) / events settled: one transaction per batch write. p99 interpolated in ingest_batch_latency_seconds buckets (…, 0.2, 0.25, 0.3 s, …); the share within ${args.slo} ms is read exactly at its bucket. The adaptive service starts from the design card's window (500 / 200 ms) and keeps its state across regimes, as a running service would.`,
    `- Every event stored? ${integrity.join('; ')}.`,
  );
  return lines.join('\n');
}

const settings: WindowSetting[] = [
  ...STATIC_GRID.map(([size, waitMs]) => ({
    id: `static_${size}_${waitMs}`,
    label: `static ${size} / ${waitMs} ms${size === 500 && waitMs === 200 ? ' (default)' : ''}`,
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
  durationSeconds: args.phase * PHASES.length,
  warmupSeconds: 0,
  connections: 64,
  rateConnections: 64,
  lowRate: 0,
};
await runScenario(
  'adaptive-window',
  options,
  `replay generator in its own process; open loop, ${PHASES.map((p) => `${p.rate}/s${p.rttMs ? ` +${p.rttMs} ms RTT` : ''}`).join(' → ')}, ${args.phase} s each (${args.settle} s of each not measured); loopback only`,
  async (ctx) => {
    const schedule = stepSchedule(args.seed);
    const scheduleFile = path.join(ctx.runDir, `schedule-seed${args.seed}.json`);
    await writeFile(scheduleFile, JSON.stringify(schedule));
    const target = new URL(ctx.server.adminUrl);
    const proxyFor = async (db: ModeDatabase) => {
      const proxy = new DelayingProxy({ host: target.hostname, port: Number(target.port || 5432) });
      const port = await proxy.start();
      const url = new URL(db.url);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      return { url: url.toString(), proxy };
    };
    const results: SettingResult[] = [];
    for (const setting of settings) results.push(await runSetting(ctx, setting, scheduleFile, proxyFor));
    const data = results.flatMap((r) =>
      r.seconds.flatMap((s) => [
        { window: r.setting.label, second: s.second, panel: `accepted → committed p99, ms (SLO ${args.slo})`, value: s.p99Ms },
        { window: r.setting.label, second: s.second, panel: 'events per batch (per commit)', value: s.eventsPerBatch },
        { window: r.setting.label, second: s.second, panel: 'window wait, ms', value: s.waitMs },
      ]),
    );
    const written = await writeFigure(
      ctx.runDir,
      lineChart({
        name: 'adaptive-window',
        title: `Batch windows through ${PHASES.map((p) => p.label).join(' → ')} (${args.phase} s each)`,
        data,
        x: { field: 'second', title: 'seconds into the replay' },
        y: { field: 'value', title: '' },
        series: { field: 'window', title: 'window' },
        row: { field: 'panel', title: '' },
        height: 150,
      }),
    );
    const figures = figureLinks([written], ['adaptive vs static windows over the four regimes']);
    return { markdown: render(results, figures), json: results };
  },
);
