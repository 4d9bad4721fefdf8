/**
 * What every mode shares: the options, child servers and load runs, database and CPU counters
 * around a run, and how a full-load run is sized.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadOptions, LoadResult } from '../generators/load.ts';
import { machineBusyMs, processCpuMs, serverTreeCpuMs } from './cpu.ts';
import { readCounters, type BenchServer, type DatabaseCounters, type ModeDatabase } from './database.ts';
import { freePort, sleep, spawnChild, waitForExit, waitUntilHealthy, type Child } from './processes.ts';
import type { CpuUse, PerEvent } from './report.ts';

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(BENCH_DIR, '..');
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');
export const TSX = ['--import', 'tsx'];
/**
 * node's arguments before `src/server.ts` in `npm start` (package.json), e.g. the young-generation
 * size and tsx: the bench runs the service exactly as a user starts it.
 */
export const SERVICE_NODE_ARGS: readonly string[] = (() => {
  const start = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const match = /\bnode ((?:\S+ )*?)src\/server\.ts$/.exec(start);
  if (!match) throw new Error(`package.json's start script is not "… node <flags> src/server.ts": ${start}`);
  return match[1]!.trim().split(/\s+/);
})();
/** pg_stat_statements and transaction ids are current at once; a moment for the last replies. */
export const STATS_SETTLE_MS = 250;
export const SERVER_START_TIMEOUT_MS = 60_000;
export const SERVER_STOP_GRACE_MS = 45_000;
export const DRAIN_TIMEOUT_MS = 30_000;

export interface BenchOptions {
  readonly cpuProf: boolean;
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly connections: number;
  readonly rateConnections: number;
  /**
   * Steady open-loop runs: the generator opens connections beyond rateConnections, up to this
   * many, when a request falls due while every one is busy (lib/paced.ts). Unset: a fixed set.
   */
  readonly rateMaxConnections?: number;
  readonly lowRate: number;
}

export const progress = (message: string) => process.stderr.write(`· ${message}\n`);

export interface Context {
  readonly options: BenchOptions;
  readonly server: BenchServer;
  readonly runDir: string;
}

export interface HttpServer {
  readonly child: Child;
  readonly baseUrl: string;
}

export async function startHttpServer(ctx: Context, name: string, nodeArgs: readonly string[], env: Record<string, string>): Promise<HttpServer> {
  const port = await freePort();
  const child = spawnChild(process.execPath, nodeArgs, {
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' },
    logFile: path.join(ctx.runDir, `${name}.log`),
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitUntilHealthy(`${baseUrl}/healthz`, child, SERVER_START_TIMEOUT_MS);
  return { child, baseUrl };
}

export async function runLoadProcess(ctx: Context, name: string, options: LoadOptions): Promise<LoadResult> {
  const child = spawnChild(process.execPath, [...TSX, path.join(BENCH_DIR, 'generators', 'load.ts'), JSON.stringify(options)], {
    logFile: path.join(ctx.runDir, `load-${name}.log`),
    captureStdout: true,
  });
  const { code } = await waitForExit(child, options.durationSeconds * 3000 + 60_000, `the load generator (${name})`);
  const line = child.stdout().trim().split('\n').at(-1);
  if (code !== 0 || !line) throw new Error(`the load generator (${name}) failed with code ${code}; see load-${name}.log`);
  const result = JSON.parse(line) as LoadResult;
  if (result.ok2xx === 0) {
    throw new Error(`${name}: no 2xx answers (status codes ${JSON.stringify(result.statusCodes)}, ${result.errors} errors); see the server's log in ${ctx.runDir}`);
  }
  progress(
    `${name}: ${result.ok2xx} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors in ${result.durationSeconds.toFixed(1)} s; p50 ${result.latency.p50.toFixed(2)} ms, p99 ${result.latency.p99.toFixed(2)} ms`,
  );
  return result;
}

/** The database's counters before and after `work`. */
export async function measureDatabase<T>(ctx: Context, db: ModeDatabase, work: () => Promise<T>) {
  await sleep(STATS_SETTLE_MS);
  const before = await readCounters(ctx.server, db);
  const result = await work();
  await sleep(STATS_SETTLE_MS);
  const after = await readCounters(ctx.server, db);
  return { result, before, after };
}

/** Per event; round trips from statements (less COMMITs sent with the INSERT) or from `derived`. */
export function perEvent(ctx: Context, before: DatabaseCounters, after: DatabaseCounters, events: number, derivedRoundTrips: number): PerEvent {
  const statements = after.statements - before.statements;
  const commitStatements = after.commitStatements - before.commitStatements;
  const measured = ctx.server.statementsAvailable;
  return {
    commits: (after.nextXid - before.nextXid) / events,
    statements: measured ? statements / events : undefined,
    roundTrips: (measured ? statements - commitStatements : derivedRoundTrips) / events,
  };
}

/** CPU used by the server process and PostgreSQL around `work`; the generator reports its own. */
export async function withCpu<T extends { load: LoadResult }>(ctx: Context, server: HttpServer, work: () => Promise<T>): Promise<T & { cpu: CpuUse }> {
  const pid = server.child.process.pid;
  const server0 = processCpuMs(pid);
  const postgres0 = serverTreeCpuMs(ctx.server.postmasterPid);
  const machine0 = machineBusyMs();
  const result = await work();
  const server1 = processCpuMs(pid);
  const postgres1 = serverTreeCpuMs(ctx.server.postmasterPid);
  const machine1 = machineBusyMs();
  const difference = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : b - a);
  const serverMs = difference(server0, server1);
  const postgresMs = difference(postgres0, postgres1);
  const machineMs = difference(machine0, machine1);
  const generatorMs = result.load.generatorCpuMs;
  return {
    ...result,
    cpu: {
      serverMs,
      postgresMs,
      generatorMs,
      // Everything else the machine did meanwhile (other work on it, the kernel's own threads).
      otherMs: machineMs === undefined ? undefined : Math.max(0, machineMs - (serverMs ?? 0) - (postgresMs ?? 0) - generatorMs),
    },
  };
}

/**
 * A timed closed-loop warm-up, whose rate sizes the measured run: that run stops after a count of
 * responses (about durationSeconds long), so every request it sent was answered and counted.
 */
export async function warmUp(ctx: Context, name: string, url: string): Promise<{ warm: LoadResult; measured: LoadOptions }> {
  const warm = await runLoadProcess(ctx, `${name}-warmup`, fullLoad(ctx, url, ctx.options.warmupSeconds));
  // The fastest second: the first seconds of a warm-up are slower (connections, JIT).
  const perSecond = warm.bestPerSecond ?? warm.ok2xx / warm.durationSeconds;
  const amount = Math.max(ctx.options.connections * 10, Math.round(perSecond * ctx.options.durationSeconds));
  return { warm, measured: { ...fullLoad(ctx, url, ctx.options.durationSeconds), amount } };
}

export function fullLoad(ctx: Context, url: string, durationSeconds: number): LoadOptions {
  return { url, connections: ctx.options.connections, durationSeconds };
}

export function steadyLoad(ctx: Context, url: string, ratePerSecond: number, generator: 'paced' | 'autocannon'): LoadOptions {
  return {
    url,
    connections: ctx.options.rateConnections,
    ...(generator === 'paced' && ctx.options.rateMaxConnections !== undefined ? { maxConnections: ctx.options.rateMaxConnections } : {}),
    durationSeconds: ctx.options.durationSeconds,
    overallRate: ratePerSecond,
    rateGenerator: generator,
    // autocannon: counted, so no request is left in flight (see LoadOptions.amount).
    ...(generator === 'autocannon' ? { amount: ratePerSecond * ctx.options.durationSeconds } : {}),
  };
}

export function fullScenario(ctx: Context, load: LoadResult): string {
  return `full load, ${ctx.options.connections} connections, ${load.durationSeconds.toFixed(1)} s`;
}

export function rate(events: number, seconds: number) {
  return { events, seconds, eventsPerSecond: events / seconds };
}
