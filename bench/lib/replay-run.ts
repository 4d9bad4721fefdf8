/**
 * One replay of a bursty schedule against a running service: the replay generator in its own
 * process, /metrics scraped every second meanwhile, drained before and after. What window-grid.ts
 * and before-after.ts share.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ReplayOptions, ReplayResult } from '../generators/replay.ts';
import type { Schedule } from '../generators/bursty-schedule.ts';
import { BENCH_DIR, TSX, progress, type Context, type HttpServer } from './harness.ts';
import { sleep, spawnChild, waitForExit } from './processes.ts';
import { histogram, histogramDelta, scrape, type Histogram, type Scrape } from './prometheus.ts';
import { waitForDrain } from './scenario.ts';

export interface ReplayRun {
  readonly replay: ReplayResult;
  readonly before: Scrape;
  readonly after: Scrape;
  /** Scrapes at start + 1 s, + 2 s, … until the replay ended (index 0 = + 1 s). */
  readonly perSecond: readonly Scrape[];
}

export async function writeSchedule(ctx: Context, schedule: Schedule): Promise<string> {
  const file = path.join(ctx.runDir, `schedule-seed${schedule.options.seed}.json`);
  await writeFile(file, JSON.stringify(schedule));
  return file;
}

export async function runReplayProcess(ctx: Context, name: string, options: ReplayOptions, timeoutMs: number): Promise<ReplayResult> {
  const child = spawnChild(process.execPath, [...TSX, path.join(BENCH_DIR, 'generators', 'replay.ts'), JSON.stringify(options)], {
    logFile: path.join(ctx.runDir, `replay-${name}.log`),
    captureStdout: true,
  });
  const { code } = await waitForExit(child, timeoutMs, `the replay (${name})`);
  const line = child.stdout().trim().split('\n').at(-1);
  if (code !== 0 || !line) throw new Error(`the replay (${name}) failed with code ${code}; see replay-${name}.log`);
  const result = JSON.parse(line) as ReplayResult;
  progress(
    `${name}: ${result.eventsOk}/${result.events} events in 2xx, statuses ${JSON.stringify(result.statusCodes)}, ${result.errors} errors; single p99 ${result.single.p99.toFixed(1)} ms, bulk p99 ${result.bulk.p99.toFixed(1)} ms`,
  );
  return result;
}

export async function replayAgainst(ctx: Context, server: HttpServer, name: string, scheduleFile: string, durationSeconds: number): Promise<ReplayRun> {
  const metricsUrl = `${server.baseUrl}/metrics`;
  const before = await waitForDrain(metricsUrl);
  const started = Date.now();
  let done = false;
  const replaying = runReplayProcess(ctx, name, { baseUrl: server.baseUrl, scheduleFile }, durationSeconds * 3000 + 60_000).finally(() => (done = true));
  const perSecond: Scrape[] = [];
  for (let second = 1; !done || second <= durationSeconds; second++) {
    await sleep(Math.max(0, started + second * 1000 - Date.now()));
    const metrics = await scrape(metricsUrl).catch(() => undefined);
    perSecond.push(metrics ?? perSecond.at(-1) ?? before);
    if (second > durationSeconds + 120) break;
  }
  const replay = await replaying;
  const after = await waitForDrain(metricsUrl);
  return { replay, before, after, perSecond };
}

/** Sum of the histogram `name`'s changes over the seconds `pick` selects (second s: scrape s − scrape s−1). */
export function histogramOverSeconds(run: ReplayRun, name: string, pick: (second: number) => boolean): Histogram | undefined {
  let total: Histogram | undefined;
  run.perSecond.forEach((scrapeAt, index) => {
    if (!pick(index)) return;
    const previous = index === 0 ? run.before : run.perSecond[index - 1]!;
    const change = histogramDelta(histogram(scrapeAt, name), histogram(previous, name));
    total = total
      ? { buckets: total.buckets.map((b, i) => ({ le: b.le, count: b.count + (change.buckets[i]?.count ?? 0) })), count: total.count + change.count, sum: total.sum + change.sum }
      : change;
  });
  return total;
}
