/**
 * Several open-loop streams at once, each with its own rate, connections and bodies (e.g. one
 * tenant each), in one load-generator process; run by tenants.ts:
 *   node --import tsx bench/generators/load-streams.ts '{"durationSeconds":10,"warmupSeconds":0,"timeoutMs":5000,
 *     "streams":[{"name":"noisy","url":"http://127.0.0.1:PORT/event","ratePerSecond":3000,"connections":64,"variant":{"tenant":"noisy"}}]}'
 * Each stream is lib/paced.ts's generator (latency from when a request was due). Prints one JSON
 * StreamsResult line on stdout.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeVariantBodies, type BodyVariant } from '../lib/bodies.ts';
import { percentile, runPaced } from '../lib/paced.ts';

export interface StreamOptions {
  readonly name: string;
  readonly url: string;
  readonly ratePerSecond: number;
  readonly connections: number;
  readonly variant: BodyVariant;
}

export interface StreamsOptions {
  readonly streams: readonly StreamOptions[];
  readonly durationSeconds: number;
  /** Sent at the same rates first; answers counted in statusCodes, latencies not recorded. */
  readonly warmupSeconds: number;
  /** Per request; also bounds how long a stream waits for its backlog once its sending is over. */
  readonly timeoutMs: number;
}

export interface StreamResult {
  readonly name: string;
  readonly ratePerSecond: number;
  readonly durationSeconds: number;
  readonly sent: number;
  readonly statusCodes: Record<string, number>;
  readonly errors: number;
  readonly timeouts: number;
  /** Sent but neither answered nor failed when the stream gave up waiting. */
  readonly unanswered: number;
  /** Of 2xx answers, ms from when the request was due. */
  readonly latency: { p50: number; p90: number; p99: number; max: number; count: number };
  readonly sendLagP99Ms: number;
}

export interface StreamsResult {
  readonly streams: readonly StreamResult[];
  readonly generatorCpuMs: number;
}

export async function runStreams(options: StreamsOptions): Promise<StreamsResult> {
  const cpuBefore = process.cpuUsage();
  const streams = await Promise.all(
    options.streams.map(async (stream): Promise<StreamResult> => {
      const result = await runPaced({
        url: stream.url,
        ratePerSecond: stream.ratePerSecond,
        durationSeconds: options.durationSeconds,
        connections: stream.connections,
        bodies: makeVariantBodies(256, stream.variant),
        timeoutMs: options.timeoutMs,
        warmupSeconds: options.warmupSeconds,
      });
      const sorted = result.latenciesMs.slice().sort();
      const answered = Object.values(result.statusCodes).reduce((sum, count) => sum + count, 0);
      return {
        name: stream.name,
        ratePerSecond: stream.ratePerSecond,
        durationSeconds: result.durationSeconds,
        sent: result.sent,
        statusCodes: result.statusCodes,
        errors: result.errors,
        timeouts: result.timeouts,
        unanswered: result.sent - answered - result.errors - result.timeouts,
        latency: {
          p50: percentile(sorted, 0.5),
          p90: percentile(sorted, 0.9),
          p99: percentile(sorted, 0.99),
          max: sorted.at(-1) ?? 0,
          count: sorted.length,
        },
        sendLagP99Ms: result.sendLagP99Ms,
      };
    }),
  );
  const cpu = process.cpuUsage(cpuBefore);
  return { streams, generatorCpuMs: (cpu.user + cpu.system) / 1000 };
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (isMain) {
  const options = JSON.parse(process.argv[2] ?? '{}') as StreamsOptions;
  if (!Array.isArray(options.streams) || options.streams.length === 0 || !(options.durationSeconds > 0)) {
    process.stderr.write('usage: load-streams.ts \'{"durationSeconds":S,"warmupSeconds":W,"timeoutMs":T,"streams":[{"name","url","ratePerSecond","connections","variant"}]}\'\n');
    process.exit(2);
  }
  const result = await runStreams(options);
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}
