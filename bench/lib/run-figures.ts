/** One service run's figures as the batching scenarios (batch-flush.ts, adaptive-window.ts) report them. */
import { batching, type Batching, type ServiceRun } from './scenario.ts';
import { histogram, histogramDelta, quantile, value } from './prometheus.ts';

export interface RunFigures {
  readonly load: string;
  readonly eventsPerSecond: number;
  readonly ok2xx: number;
  /** Non-2xx answers, errors and timeouts. */
  readonly notOk: number;
  readonly stored: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Open loop: how late the generator itself sent, p99 (it counts in the latencies). */
  readonly generatorLagP99Ms: number | undefined;
  /** The write-ahead log's group commit (write + fdatasync), p99 from its histogram. */
  readonly walFsyncP99Ms: number | undefined;
  readonly commitsPerEvent: number;
  readonly serverCpuMsPer1k: number | undefined;
  readonly batching: Batching;
  /** ingest_batch_window_size and _wait_seconds (ms) at the end of the run. */
  readonly windowSize: number;
  readonly windowWaitMs: number;
}

const FSYNC = 'ingest_wal_fsync_duration_seconds';
const msOf = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);

export function runFigures(load: string, run: ServiceRun): RunFigures {
  return {
    load,
    eventsPerSecond: run.load.ok2xx / run.load.durationSeconds,
    ok2xx: run.load.ok2xx,
    notOk: run.load.non2xx + run.load.errors + run.load.timeouts,
    stored: run.stored,
    p50Ms: run.load.latency.p50,
    p99Ms: run.load.latency.p99,
    maxMs: run.load.latency.max,
    generatorLagP99Ms: run.load.generatorLagP99Ms,
    walFsyncP99Ms: msOf(quantile(histogramDelta(histogram(run.after, FSYNC), histogram(run.before, FSYNC)), 0.99)),
    commitsPerEvent: run.perEvent.commits,
    serverCpuMsPer1k: run.cpu.serverMs === undefined ? undefined : (run.cpu.serverMs / run.load.ok2xx) * 1000,
    batching: batching(run.after, run.before),
    windowSize: value(run.after, 'ingest_batch_window_size'),
    windowWaitMs: value(run.after, 'ingest_batch_window_wait_seconds') * 1000,
  };
}
