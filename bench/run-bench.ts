/**
 * `npm run bench [-- --cpu-prof] [--duration=S] [--connections=N] [--low-rate=R] [--warmup=S]`
 *
 * One PostgreSQL (embedded, fsync on, or DATABASE_URL), a fresh migrated database per mode, the
 * same events from a load generator in its own process against (a) a naive INSERT-per-event server,
 * (b) the service, (c) a bare Fastify handler, then (d) one COPY of as many rows as (b) stored.
 * Prints the machine, a Markdown table and pass/fail against the targets; writes the same report
 * and the raw numbers to bench/results/<time>/. Every child process is killed at the end.
 */
import { parseBenchArgs } from './lib/options.ts';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startBenchServer } from './lib/database.ts';
import { RESULTS_DIR, ROOT, progress, type BenchOptions, type Context } from './lib/harness.ts';
import { describeMachine, psqlVersion } from './lib/machine.ts';
import { exitOnSignal, killAll } from './lib/processes.ts';
import { perEventText, renderReport, type Integrity, type Measurement, type Report, type Target } from './lib/report.ts';
import { runBare } from './modes/bare.ts';
import { runCopy } from './modes/copy.ts';
import { runNaive } from './modes/naive.ts';
import { runService } from './modes/service.ts';
import { summariseFile } from './summarise-profile.ts';

function parseOptions(argv: readonly string[]): BenchOptions {
  const args = parseBenchArgs(argv, {
    numeric: {
      duration: { default: 10, min: 1, max: 30 },
      warmup: { default: 3, min: 1, max: 10 },
      connections: { default: 64, min: 1, max: 512 },
      'low-rate': { default: 1000, min: 0, max: 100_000 },
      'rate-max-connections': { default: 256, min: 32, max: 1024 },
    },
    flags: ['cpu-prof'],
  });
  return {
    cpuProf: args['cpu-prof'],
    durationSeconds: args.duration,
    warmupSeconds: args.warmup,
    connections: args.connections,
    rateConnections: 32,
    rateMaxConnections: args['rate-max-connections'],
    lowRate: args['low-rate'],
  };
}

function targets(measurements: readonly Measurement[], integrity: readonly Integrity[], half: Measurement | undefined): Target[] {
  const find = (mode: string, full: boolean) => measurements.find((m) => m.mode === mode && m.fullLoad === full);
  const naive = find('a', true);
  const service = find('b', true);
  const bare = find('c', true);
  const serviceIntegrity = integrity.find((i) => i.mode === 'b');
  const result: Target[] = [];
  if (service && naive) {
    const ratio = service.eventsPerSecond / naive.eventsPerSecond;
    result.push({ name: '(b) ≥ 5× (a) events/s', measured: `${ratio.toFixed(1)}×`, pass: ratio >= 5 });
  }
  if (service && bare && serviceIntegrity) {
    const ratio = service.eventsPerSecond / bare.eventsPerSecond;
    const everyEvent = serviceIntegrity.rows === serviceIntegrity.ok2xx && (service.load?.non2xx ?? 0) === 0 && (service.load?.errors ?? 0) === 0;
    result.push({
      name: '(b) ≥ 0.6× (c) events/s while storing every event',
      measured: `${ratio.toFixed(2)}×; ${everyEvent ? 'every request answered 2xx and stored' : `NOT every event: ${service.load?.non2xx ?? 0} non-2xx, rows ${serviceIntegrity.rows} vs 2xx ${serviceIntegrity.ok2xx}`}`,
      pass: ratio >= 0.6 && everyEvent,
    });
  }
  const serverMsPerEvent = (m: Measurement | undefined) => (m?.cpu?.serverMs === undefined || m.events === 0 ? undefined : m.cpu.serverMs / m.events);
  const serviceCpu = serverMsPerEvent(service);
  const bareCpu = serverMsPerEvent(bare);
  if (serviceCpu !== undefined && bareCpu !== undefined && bareCpu > 0) {
    const ratio = serviceCpu / bareCpu;
    result.push({ name: '(b) server CPU per event ≤ 1.7× (c)\'s', measured: `${ratio.toFixed(2)}×`, pass: ratio <= 1.7 });
  }
  if (service?.perEvent) {
    const commits = service.perEvent.commits;
    result.push({
      name: 'commits per event near 1/500 at full load (pass: ≤ 1/400)',
      measured: perEventText(commits),
      pass: commits <= 1 / 400,
    });
  }
  if (half?.load) {
    const { load } = half;
    const rejected = load.non2xx + load.errors + load.timeouts;
    // The service reads DURABILITY from the environment the bench passes through (default wal).
    const wal = (process.env.DURABILITY ?? 'wal') === 'wal';
    const limitMs = wal ? 15 : 10;
    result.push({
      name: `HTTP p99 ≤ ${limitMs} ms at half of peak (steady, open loop; DURABILITY=${wal ? 'wal' : 'memory'})`,
      measured: `${load.latency.p99.toFixed(2)} ms at ${Math.round(half.eventsPerSecond)} events/s${rejected > 0 ? `; ${rejected} requests not answered 2xx` : ''}`,
      pass: load.latency.p99 <= limitMs && rejected === 0,
    });
  }
  return result;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const runDir = path.join(RESULTS_DIR, stamp);
  await mkdir(runDir, { recursive: true });
  const machine = describeMachine();
  const psql = psqlVersion();
  const startedAt = Date.now();
  progress(`results and logs in ${path.relative(ROOT, runDir)}`);
  progress(process.env.DATABASE_URL ? 'using DATABASE_URL' : 'starting embedded PostgreSQL (fsync on), restarting once to preload pg_stat_statements');
  const server = await startBenchServer();
  const stopServer = once(() => server.stop());
  exitOnSignal(stopServer, progress);
  const ctx: Context = { options, server, runDir };
  try {
    const naive = await runNaive(ctx);
    const service = await runService(ctx);
    const bare = await runBare(ctx, service.halfPeakRate);
    const copy = await runCopy(ctx, service.storedAtFullLoad, psql !== undefined);
    const measurements = [naive.measurement, service.measurements[0]!, bare[0]!, copy.measurement, ...service.measurements.slice(1), ...bare.slice(1)];
    const integrity = [naive.integrity, service.integrity];
    const report: Report = {
      machine,
      postgres: `${server.settings.version} (${server.embedded ? 'embedded' : 'DATABASE_URL'}; fsync=${server.settings.fsync}, synchronous_commit=${server.settings.synchronousCommit})`,
      psql: psql ?? 'psql not on PATH',
      setup: `load generator in its own process; ${options.connections} connections closed loop for full load (autocannon), ${options.rateConnections} for steady rates (the open-loop generator adds connections up to ${options.rateMaxConnections ?? options.rateConnections} when a request falls due while every one is busy, as k6's constant-arrival-rate does); ${options.durationSeconds} s per run after a ${options.warmupSeconds} s warm-up; loopback only`,
      measurements,
      integrity,
      targets: targets(measurements, integrity, service.halfPeak),
      notes: notes(ctx, copy.method, measurements),
    };
    const rendered = renderReport(report);
    process.stdout.write(`\n${rendered}\n`);
    await writeFile(path.join(runDir, 'report.md'), `${rendered}\n`);
    await writeFile(path.join(runDir, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
    if (service.profile) {
      const summary = `${summariseFile(service.profile, 15, service.profileWindow)}\n\nV8 samples wall time on the main thread: a native call's self time (writev: the HTTP response going out) includes the kernel's work in that system call — on loopback, the receiving side's TCP processing and waking the load generator.`;
      process.stdout.write(`\n## CPU profile of the service during the full-load run\n\n${summary}\n`);
      await writeFile(path.join(runDir, 'profile.md'), `${summary}\n`);
    } else if (options.cpuProf) {
      progress('WARNING: --cpu-prof was given but no .cpuprofile was written');
    }
    progress(`done in ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
  } finally {
    killAll();
    await stopServer();
  }
}

function notes(ctx: Context, copyMethod: string, measurements: readonly Measurement[]): string[] {
  const measured = ctx.server.statementsAvailable;
  const bodyBytes = measurements.find((m) => m.load)?.load?.bodyBytesMean ?? 0;
  const lags = measurements
    .filter((m) => m.load?.generatorLagP99Ms !== undefined)
    .map(
      (m) =>
        `${m.mode === 'b' ? '(b)' : '(c)'} ${m.scenario.split(',')[0]}: ${m.load!.generatorLagP99Ms!.toFixed(1)} ms` +
        (m.load!.connectionsOpened === undefined ? '' : ` (${m.load!.connectionsOpened} connections opened)`),
    );
  return [
    `Each request is one distinct event of ~${bodyBytes.toFixed(0)} bytes of JSON (256 bodies cycled, no id: the server assigns a UUIDv7).`,
    'events/s for HTTP modes = 2xx responses / run time. (b) answers 202 once an event is queued (ACK_MODE=queued) and every accepted event was committed before the counters were read; (a) answers 201 after its own commit.',
    'commits/event = write transactions per event: Δ of the next transaction id (pg_current_snapshot() xmax, read from the admin database) / events stored in the run. Every write transaction takes one id and commits once; read-only ones take none. Server-wide, but only the mode under test writes during its run. pg_stat_database.xact_commit cannot be read per run: each backend publishes it at most once a second and, once idle, only 10 s later (PGSTAT_IDLE_INTERVAL), so a read seconds after a run undercounts. It is read over each database\'s whole life, after its server exited, under "Every event stored?".',
    measured
      ? 'statements/event from pg_stat_statements (top level, utility statements included). round trips/event = those statements less bare COMMITs, because the sink sends its COMMIT in the same Query message as its INSERT: BEGIN, COPY, INSERT+COMMIT = 3 round trips per batch (+1 CREATE TEMP TABLE per new connection).'
      : 'pg_stat_statements is not available on this server: round trips are derived — (b) 3 per batch from ingest_flushes_total (BEGIN, COPY, INSERT+COMMIT), (a) 1 per INSERT, (d) 1 COPY.',
    `CPU ms per 1000 events, from /proc: the server process (every thread), PostgreSQL (postmaster, its live children and its exited backends), the load generator (its own process.cpuUsage()), and everything else the machine was busy with meanwhile (/proc/stat less those three: other work on the machine, kernel threads). ${describeMachine().cores} cores give ${describeMachine().cores * 1000} CPU ms per second in all, so the sum per event bounds the events/s this machine can reach; a large "other" means the run was competing for the CPU.`,
    'Event-loop delay: prom-client\'s monitorEventLoopDelay (a timer every 10 ms) in the service, read right after the run (it resets at each scrape), less the 10 ms interval: how long the loop was blocked, which every request waiting at that moment pays. GC ms: Δ nodejs_gc_duration_seconds_sum over the run and its drain.',
    'Batch latency is accepted → committed, from the ingest_batch_latency_seconds histogram, interpolated within buckets (bounds 5, 10, 25, 50, 100, 150, 200, 250 ms …), so it is an estimate.',
    'Steady rates: an open-loop generator (bench/lib/paced.ts) sends request i at start + i/rate and measures latency from when it was due. autocannon\'s overallRate is shown for comparison: it sends each connection\'s per-second quota back to back and then idles, so the server sees full-speed bursts, and its coordinated-omission correction (expected interval 1 ms) inflates every percentile above 1 ms.',
    `p99 of the open-loop generator's own lateness in sending (it counts in its latencies; it is the generator's event loop, not the server): ${lags.join('; ') || '—'}.`,
    'Full-load runs are counted, not timed: a timed autocannon run drops its connections with requests in flight, which a server may still store. A timed warm-up measures the rate, and the measured run then stops after rate × duration answers, so every request it sent was answered.',
    `(d) is ${copyMethod} straight into events (no staging table, no ON CONFLICT), as many rows as (b) stored at full load; time includes starting psql.`,
    `${ctx.options.cpuProf ? 'The service ran with --cpu-prof during the full-load run (profiling slows it).' : 'No profiling.'} Every server and the load generator run in their own processes on the same machine as PostgreSQL: with few cores they compete for CPU, and other work on the machine makes the numbers noisy.`,
  ];
}

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => (result ??= fn());
}

try {
  await main();
} catch (error) {
  killAll();
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
}

