/**
 * Replays an arrival schedule (bursty-schedule.ts) against the service, open loop, in a process of
 * its own:
 *   node --import tsx bench/generators/replay.ts '{"baseUrl":"http://127.0.0.1:PORT","scheduleFile":"…"}'
 * Each request is sent when it is due, whatever happened to earlier ones (undici pools queue it
 * while every connection is busy, and that wait counts); its latency is measured from when it was
 * due, so a stall shows in the percentiles (no coordinated omission). Single events go to
 * POST /event, burst requests to POST /events as NDJSON. Prints one JSON ReplayResult line.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { makeBodies, makeEvent } from '../lib/event-body.ts';
import { percentile } from '../lib/paced.ts';
import type { Schedule } from './bursty-schedule.ts';

export interface ReplayOptions {
  readonly baseUrl: string;
  readonly scheduleFile: string;
  /** Keep-alive connections for single events, and for burst requests. */
  readonly singleConnections?: number;
  readonly bulkConnections?: number;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface ReplayResult {
  readonly durationSeconds: number;
  readonly requests: number;
  readonly events: number;
  readonly statusCodes: Record<string, number>;
  readonly errors: number;
  /** Events in 2xx answers. */
  readonly eventsOk: number;
  readonly single: LatencySummary;
  /** Single events due outside the second after each burst's start. */
  readonly singleOutsideBursts: LatencySummary;
  readonly bulk: LatencySummary;
  /** Per second of the schedule (by due time): offered events, and p99 of single-event latency. */
  readonly perSecond: readonly { second: number; offered: number; singleP99Ms: number; singleCount: number }[];
  readonly generatorCpuMs: number;
}

const summarise = (values: number[]): LatencySummary => {
  const sorted = Float64Array.from(values).sort();
  return { count: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? 0 };
};

export async function replay(options: ReplayOptions): Promise<ReplayResult> {
  const cpuBefore = process.cpuUsage();
  const schedule = JSON.parse(await readFile(options.scheduleFile, 'utf8')) as Schedule;
  const singles = makeBodies(256);
  const bulkBodies = Array.from({ length: 16 }, (_, b) =>
    Array.from({ length: schedule.options.burstRequestEvents }, (_, i) => JSON.stringify(makeEvent(b * 10_000 + i))).join('\n') + '\n',
  );
  const singlePool = new Pool(options.baseUrl, { connections: options.singleConnections ?? 64, pipelining: 1, keepAliveTimeout: 60_000 });
  const bulkPool = new Pool(options.baseUrl, { connections: options.bulkConnections ?? 16, pipelining: 1, keepAliveTimeout: 60_000 });
  const statusCodes: Record<string, number> = {};
  const singleLatencies: number[] = [];
  const singleOutside: number[] = [];
  const inBurst = (atMs: number) => schedule.burstStartsMs.some((startMs) => atMs >= startMs && atMs < startMs + 1000);
  const bulkLatencies: number[] = [];
  const seconds = Math.ceil(schedule.options.durationSeconds);
  const offered = Array.from({ length: seconds }, () => 0);
  const singleBySecond: number[][] = Array.from({ length: seconds }, () => []);
  let errors = 0;
  let eventsOk = 0;
  let events = 0;
  const inFlight: Promise<void>[] = [];
  const started = performance.now();

  const send = (index: number) => {
    const arrival = schedule.arrivals[index]!;
    const dueAt = started + arrival.atMs;
    const second = Math.min(seconds - 1, Math.floor(arrival.atMs / 1000));
    offered[second]! += arrival.events;
    events += arrival.events;
    const bulk = arrival.events > 1;
    const request = bulk
      ? bulkPool.request({ method: 'POST', path: '/events', headers: { 'content-type': 'application/x-ndjson' }, body: bulkBodies[index % bulkBodies.length]! })
      : singlePool.request({ method: 'POST', path: '/event', headers: { 'content-type': 'application/json' }, body: singles[index % singles.length]! });
    inFlight.push(
      request.then(
        async (response) => {
          await response.body.dump();
          const latency = performance.now() - dueAt;
          statusCodes[response.statusCode] = (statusCodes[response.statusCode] ?? 0) + 1;
          if (response.statusCode >= 200 && response.statusCode < 300) {
            eventsOk += arrival.events;
            (bulk ? bulkLatencies : singleLatencies).push(latency);
            if (!bulk) singleBySecond[second]!.push(latency);
            if (!bulk && !inBurst(arrival.atMs)) singleOutside.push(latency);
          }
        },
        () => {
          errors++;
        },
      ),
    );
  };

  await new Promise<void>((resolve) => {
    let next = 0;
    const tick = () => {
      const now = performance.now() - started;
      while (next < schedule.arrivals.length && schedule.arrivals[next]!.atMs <= now) send(next++);
      if (next >= schedule.arrivals.length) resolve();
      else setTimeout(tick, Math.max(0, Math.min(1, schedule.arrivals[next]!.atMs - now)));
    };
    tick();
  });
  const durationSeconds = (performance.now() - started) / 1000;
  await Promise.all(inFlight);
  await Promise.all([singlePool.close(), bulkPool.close()]);
  const cpu = process.cpuUsage(cpuBefore);
  return {
    durationSeconds,
    requests: schedule.arrivals.length,
    events,
    statusCodes,
    errors,
    eventsOk,
    single: summarise(singleLatencies),
    singleOutsideBursts: summarise(singleOutside),
    bulk: summarise(bulkLatencies),
    perSecond: offered.map((n, second) => {
      const values = Float64Array.from(singleBySecond[second]!).sort();
      return { second, offered: n, singleP99Ms: percentile(values, 0.99), singleCount: values.length };
    }),
    generatorCpuMs: (cpu.user + cpu.system) / 1000,
  };
}

const isMain = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1]);
if (isMain) {
  const options = JSON.parse(process.argv[2] ?? '{}') as ReplayOptions;
  if (typeof options.baseUrl !== 'string' || typeof options.scheduleFile !== 'string') {
    process.stderr.write('usage: replay.ts \'{"baseUrl":…,"scheduleFile":…}\'\n');
    process.exit(2);
  }
  const result = await replay(options);
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
}
