/**
 * The load generator, run in its own process by run-bench.ts:
 *   node --import tsx bench/generators/load.ts '{"url":"http://127.0.0.1:PORT/event","connections":64,"durationSeconds":10}'
 * POSTs the benchmark events and prints one JSON LoadResult line on stdout. Closed loop (as fast
 * as the server answers) with autocannon; at a fixed rate either with autocannon's overallRate
 * (bursty, see lib/paced.ts) or with the steady open-loop generator in lib/paced.ts.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { makeBodies } from '../lib/event-body.ts';
import { makeVariantBodies, type BodyVariant } from '../lib/bodies.ts';
import { percentile, runPaced } from '../lib/paced.ts';

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationSeconds: number;
  /**
   * autocannon only: stop after this many responses instead of after durationSeconds. A timed
   * autocannon run destroys its connections with requests in flight, which the server may still
   * store; a counted run receives every answer, so stored rows can be checked against 2xx exactly.
   */
  readonly amount?: number;
  /** Requests per second over all connections; unset means as fast as the server answers. */
  readonly overallRate?: number;
  /** With overallRate: 'paced' (default, steady) or 'autocannon' (its per-second quotas). */
  readonly rateGenerator?: 'paced' | 'autocannon';
  /** Distinct bodies the connections cycle through. */
  readonly bodies?: number;
  /**
   * Tenants and poison events (lib/bodies.ts). With a variant, each autocannon connection starts
   * at its own offset in the list, so the connections do not walk through the tenants in step.
   */
  readonly variant?: BodyVariant;
  /**
   * Steady open loop only: connections may grow to this many when every one is busy as a request
   * falls due (lib/paced.ts; default: `connections`, a fixed set).
   */
  readonly maxConnections?: number;
  /** Open loop only: seconds sent at the same rate before the measured duration (default 2). */
  readonly warmupSeconds?: number;
}

export interface LoadResult {
  readonly durationSeconds: number;
  /** autocannon's count of requests sent (it includes one per connection not yet sent). */
  readonly sent: number;
  readonly ok2xx: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly statusCodes: Record<string, number>;
  /** Latency in milliseconds. */
  readonly latency: { p50: number; p90: number; p99: number; p99_9: number; max: number; mean: number };
  readonly bodyBytesMean: number;
  /** Closed loop: the largest of autocannon's per-second response counts. */
  readonly bestPerSecond?: number;
  /** Open-loop runs: p99 of how late the generator sent requests (its own delay, in the latencies). */
  readonly generatorLagP99Ms?: number;
  /** Steady open-loop runs: connections opened in all (lib/paced.ts). */
  readonly connectionsOpened?: number;
  /** CPU time the generator process used during the run (user + system). */
  readonly generatorCpuMs: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const cpuBefore = process.cpuUsage();
  const result = await runGenerator(options);
  const cpu = process.cpuUsage(cpuBefore);
  return { ...result, generatorCpuMs: (cpu.user + cpu.system) / 1000 };
}

async function runGenerator(options: LoadOptions): Promise<Omit<LoadResult, 'generatorCpuMs'>> {
  const bodies = options.variant ? makeVariantBodies(options.bodies ?? 256, options.variant) : makeBodies(options.bodies ?? 256);
  const bodyBytesMean = bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0) / bodies.length;
  if (options.overallRate !== undefined && options.rateGenerator !== 'autocannon') {
    return runSteady(options, options.overallRate, bodies, bodyBytesMean);
  }
  const requests = bodies.map((body) => ({ method: 'POST' as const, body }));
  let client = 0;
  const result = await autocannon({
    url: options.url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    connections: options.connections,
    duration: options.durationSeconds,
    ...(options.amount !== undefined ? { amount: options.amount } : {}),
    ...(options.overallRate !== undefined ? { overallRate: options.overallRate } : {}),
    timeout: 10,
    // Each connection cycles through these pre-encoded requests: no per-request work in the generator.
    requests,
    ...(options.variant
      ? {
          setupClient: (c: autocannon.Client) => {
            const offset = Math.floor((client++ * requests.length) / options.connections) % requests.length;
            c.setRequests([...requests.slice(offset), ...requests.slice(0, offset)]);
          },
        }
      : {}),
  });
  const statusCodes: Record<string, number> = {};
  for (const [code, stat] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = stat.count ?? 0;
  const { latency } = result;
  return {
    durationSeconds: result.duration,
    sent: result.requests.sent,
    ok2xx: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    latency: { p50: latency.p50, p90: latency.p90, p99: latency.p99, p99_9: latency.p99_9, max: latency.max, mean: latency.mean },
    bodyBytesMean,
    bestPerSecond: result.requests.max,
  };
}

async function runSteady(
  options: LoadOptions,
  rate: number,
  bodies: string[],
  bodyBytesMean: number,
): Promise<Omit<LoadResult, 'generatorCpuMs'>> {
  const result = await runPaced({
    url: options.url,
    ratePerSecond: rate,
    durationSeconds: options.durationSeconds,
    connections: options.connections,
    ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
    bodies,
    timeoutMs: 10_000,
    warmupSeconds: options.warmupSeconds ?? 2,
  });
  const sorted = result.latenciesMs.slice().sort();
  const answered = Object.values(result.statusCodes).reduce((sum, count) => sum + count, 0);
  const ok2xx = Object.entries(result.statusCodes)
    .filter(([status]) => status.startsWith('2'))
    .reduce((sum, [, count]) => sum + count, 0);
  const mean = sorted.length === 0 ? 0 : sorted.reduce((sum, latency) => sum + latency, 0) / sorted.length;
  return {
    durationSeconds: result.durationSeconds,
    sent: result.sent,
    ok2xx,
    non2xx: answered - ok2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: result.statusCodes,
    latency: {
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      p99_9: percentile(sorted, 0.999),
      max: sorted.at(-1) ?? 0,
      mean,
    },
    bodyBytesMean,
    generatorLagP99Ms: result.sendLagP99Ms,
    connectionsOpened: result.connectionsOpened,
  };
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (isMain) {
  const options = JSON.parse(process.argv[2] ?? '{}') as LoadOptions;
  if (typeof options.url !== 'string' || !(options.connections > 0) || !(options.durationSeconds > 0)) {
    process.stderr.write('usage: load.ts \'{"url":…,"connections":N,"durationSeconds":S,"overallRate"?:R}\'\n');
    process.exit(2);
  }
  const result = await runLoad(options);
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}
