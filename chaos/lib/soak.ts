/**
 * The soak: one service for `minutes` at half of its measured peak, a database fault every
 * minute (partition, resets, a clean restart, a SIGKILL, a slow spell, in turn), then whether RSS,
 * open file descriptors, event-loop delay and the WAL's size stayed flat: the last quarter of the
 * run against the second (the first holds the warm-up).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LedgerLoad } from './ledger-load.ts';
import type { Sample } from './monitor.ts';
import type { DatabaseServer } from './postgres-server.ts';
import { ScenarioRun, type RunOptions, type ScenarioResult } from './scenario-run.ts';

const PEAK_PROBE_MS = 5000;

type Fault = { readonly name: string; readonly needsServer: boolean; readonly inject: (r: ScenarioRun) => Promise<number> };

const FAULTS: readonly Fault[] = [
  { name: 'partition 10 s', needsServer: false, inject: async (r) => { r.proxy.freeze(); await sleep(10_000); r.proxy.thaw(); return Date.now(); } },
  { name: 'reset', needsServer: false, inject: async (r) => { await r.proxy.cut(); await r.proxy.restore(); return Date.now(); } },
  { name: 'pg_ctl restart -m fast', needsServer: true, inject: async (r) => { await r.server.control!.restartFast(); return Date.now(); } },
  { name: 'database SIGKILL', needsServer: true, inject: async (r) => { await r.server.control!.kill(); await sleep(2000); await r.server.control!.start(); return Date.now(); } },
  { name: '+500 ms per round trip for 10 s', needsServer: false, inject: async (r) => { r.proxy.setLatencyMs(500); await sleep(10_000); r.proxy.setLatencyMs(0); return Date.now(); } },
];

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? 0 : sorted[Math.floor(sorted.length / 2)]!;
}

/** Half of the peak: a closed loop of 16 connections against a fresh service for a few seconds. */
async function measurePeak(run: ScenarioRun): Promise<number> {
  const probe = new LedgerLoad({ origin: run.service!.origin, eventsPerSecond: 0, bulk: run.options.bulk, connections: 16, tenant: 'chaos' });
  probe.start();
  await sleep(PEAK_PROBE_MS);
  await probe.stop();
  await probe.close();
  // Its events are part of the ledger too.
  for (const id of probe.sent) run.load.sent.add(id);
  for (const id of probe.acknowledged) run.load.acknowledged.add(id);
  return probe.acknowledged.size / (PEAK_PROBE_MS / 1000);
}

/** `rate`: events/s to run at; undefined: half of the peak measured first. */
export async function runSoak(server: DatabaseServer, options: RunOptions, minutes: number, rate?: number): Promise<{ result: ScenarioResult; flatness: string }> {
  const title = `soak: ${minutes} min at ${rate === undefined ? 'half of peak' : `${rate} events/s`}, a database fault every minute`;
  const run = new ScenarioRun(title, server, { ...options, eventsPerSecond: 1 });
  try {
    // Set up with a trickle, measure the peak, then run the load at half of it.
    await run.setUp();
    await run.load.stop();
    const peak = rate === undefined ? await measurePeak(run) : undefined;
    const eventsPerSecond = rate ?? Math.max(Math.round(peak! / 2), 100);
    options.log(`soak: ${peak === undefined ? 'rate given' : `peak ${peak.toFixed(0)} events/s`}; running ${minutes} min at ${eventsPerSecond} events/s`);
    const load = new LedgerLoad({ origin: run.service!.origin, eventsPerSecond, bulk: options.bulk, connections: options.connections, tenant: 'chaos' });
    const sent = run.load.sent;
    const acknowledged = run.load.acknowledged;
    run.load = load;
    for (const id of sent) load.sent.add(id);
    for (const id of acknowledged) load.acknowledged.add(id);
    load.start();
    const endAt = Date.now() + minutes * 60_000;
    const faults = FAULTS.filter((fault) => !fault.needsServer || server.control);
    for (let minute = 0; Date.now() + 60_000 <= endAt + 1000; minute += 1) {
      const minuteEnds = Date.now() + 60_000;
      await sleep(20_000);
      const fault = faults[minute % faults.length]!;
      options.log(`soak: minute ${minute + 1}: ${fault.name}`);
      const healed = await fault.inject(run);
      await run.measureRecovery(healed, `minute ${minute + 1}, ${fault.name}`);
      await sleep(Math.max(minuteEnds - Date.now(), 0));
    }
    const samples = run.monitor.samples;
    const result = await run.finish();
    const flatness = flatnessReport(samples);
    const atRate = `${eventsPerSecond} events/s${peak === undefined ? '' : ` (half of a measured peak of ${peak.toFixed(0)})`}`;
    return { result: { ...result, notes: [atRate, ...result.notes, flatness.summary], problems: [...result.problems, ...flatness.problems] }, flatness: flatness.summary };
  } finally {
    await run.cleanUp();
  }
}

function flatnessReport(samples: readonly Sample[]): { summary: string; problems: string[] } {
  const quarter = Math.max(Math.floor(samples.length / 4), 1);
  const second = samples.slice(quarter, 2 * quarter);
  const last = samples.slice(-quarter);
  const measures: { name: string; of: (s: Sample) => number; unit: string; slack: number }[] = [
    { name: 'RSS', of: (s) => s.rssBytes / 2 ** 20, unit: 'MiB', slack: 48 },
    { name: 'open fds', of: (s) => s.fds, unit: '', slack: 10 },
    { name: 'event-loop p99', of: (s) => s.eventLoopP99Ms, unit: 'ms', slack: 20 },
    { name: 'WAL', of: (s) => s.walBytes / 2 ** 20, unit: 'MiB', slack: 32 },
  ];
  const problems: string[] = [];
  const parts = measures.map(({ name, of, unit, slack }) => {
    const before = median(second.map(of));
    const after = median(last.map(of));
    if (after > before * 1.5 + slack) problems.push(`${name} grew: ${before.toFixed(1)} → ${after.toFixed(1)} ${unit}`);
    return `${name} ${before.toFixed(1)} → ${after.toFixed(1)} ${unit}`.trim();
  });
  return { summary: `second quarter → last quarter (medians of 5 s samples): ${parts.join(', ')}`, problems };
}
