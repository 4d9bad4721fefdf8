import type { Logger } from 'pino';
import type pg from 'pg';
import type { Clock } from '../clock.ts';
import { recognisedFailure, sqlstateOf } from '../db/failure-class.ts';
import { probeDatabase } from '../db/probe.ts';
import type { Config } from '../config.ts';
import type { DeadLetterQueue } from '../dlq/dead-letter-queue.ts';
import type { IngestMetrics } from '../telemetry/metrics.ts';
import { BreakerSink, type BreakerState } from './breaker-sink.ts';
import { DurableDeadLetterWriter } from './dead-letter-writer.ts';
import { GiveUpDeadLetterSink } from './give-up-dead-letter-sink.ts';
import { PoisonSplittingSink } from './poison-splitting-sink.ts';
import { PostgresCopySink, type AuditChainOptions } from './postgres-copy-sink.ts';
import { RetryingSink } from './retrying-sink.ts';
import type { DeadLetterWriter } from './poison-splitting-sink.ts';
import type { Sink } from './sink.ts';

/** The longest a breaker probe (connect + SELECT 1 on a fresh connection) may take. */
const PROBE_TIMEOUT_MS = 1000;

const BREAKER_STATE_VALUES: Record<BreakerState, number> = { closed: 0, open: 1, half_open: 2 };

/**
 * What the chain writes to when it is not PostgreSQL (SINK=jetstream, SINK=http): the sink (or how
 * to build it on the chain's dead-letter writer, for a sink that learns of per-event refusals in
 * an answer), the breaker's probe (bounded by the timeout it is given), and the name its log lines use.
 */
export interface SinkTarget {
  readonly sink: Sink | ((deadLetter: DeadLetterWriter) => Sink);
  readonly probe: (timeoutMs: number) => Promise<void>;
  readonly name: string;
}

export interface SinkChain {
  readonly sink: Sink;
  readonly breaker: BreakerSink;
  readonly deadLetter: DurableDeadLetterWriter;
}

/**
 * The write path, outermost first: give-up dead-lettering → poison isolation → retry → circuit
 * breaker → COPY. Dead-letter policy lives here, in the chain, not in the pipeline.
 * Splitting sits outside retry so each half is retried on its own (a transient failure while
 * isolating poison does not re-send halves already stored); the breaker sits inside retry so
 * that every attempt is seen by it and, while it is open, attempts are refused without touching
 * the database.
 */
export function createSinkChain(options: {
  pool: pg.Pool;
  config: Pick<Config, 'db' | 'retry' | 'breaker'>;
  /** Write somewhere else than PostgreSQL COPY on `pool` (the breaker then probes the target). */
  target?: SinkTarget;
  deadLetterQueue: DeadLetterQueue;
  clock: Clock;
  metrics: IngestMetrics;
  logger: Logger;
  /** AUDIT_CHAIN=on: the COPY sink appends to the tenants' hash chains (undefined: off). */
  auditChain?: AuditChainOptions | undefined;
  /** Tests wrap the base sink to inject faults. */
  wrapBase?: (sink: Sink) => Sink;
  /**
   * Replace the decorated write path with one of the caller's, built on the (wrapped) COPY sink:
   * only the bench's whole-batch-retry baseline does this, to compare against the real chain.
   */
  replaceWritePath?: (base: Sink) => Sink;
}): SinkChain {
  const { config, metrics, logger } = options;
  const target = options.target;
  // Built first: a target sink may dead-letter the events its receiver refused one by one.
  const deadLetter = new DurableDeadLetterWriter(options.deadLetterQueue, {
    clock: options.clock,
    logger,
    retry: config.retry,
    onWritten: () => {},
    onWriteError: () => metrics.deadLetterWriteErrors.inc(),
  });
  const targetSink = typeof target?.sink === 'function' ? target.sink(deadLetter) : target?.sink;
  const copy = targetSink ?? new PostgresCopySink(options.pool, { copyTimeoutMs: config.db.copyTimeoutMs, rollups: config.db.rollups, auditChain: options.auditChain });
  const base = options.wrapBase ? options.wrapBase(copy) : copy;
  metrics.breakerState.set(0);
  // A probe answers or gives up well inside the 5 s target from a healed network to the first commit.
  const probeTimeoutMs = Math.min(config.db.connectTimeoutMs, PROBE_TIMEOUT_MS);
  const targetName = target?.name ?? 'database';
  const breaker = new BreakerSink(base, {
    ...config.breaker,
    probe: target ? () => target.probe(probeTimeoutMs) : () => probeDatabase(options.pool.options, probeTimeoutMs),
    onProbe: (result, error) => {
      metrics.databaseProbes.inc({ result });
      if (result === 'success') logger.warn(`the ${targetName} answered a probe: the breaker lets one batch through to test it`);
      else logger.debug({ err: error }, `the ${targetName} did not answer a probe; the breaker stays open and probes again after a backoff`);
    },
    onStateChange: (state) => {
      metrics.breakerState.set(BREAKER_STATE_VALUES[state]);
      metrics.breakerTransitions.inc({ to: state });
      const log = state === 'open' ? logger.error.bind(logger) : logger.warn.bind(logger);
      log(
        { breaker: state, recovery: state === 'open' ? breaker.recovery : undefined, openMs: config.breaker.openMs, target: targetName },
        state === 'open' ? breakerOpenedMessage(target ? targetName : undefined, breaker.recovery) : `${targetName} circuit breaker is now ${state}`,
      );
    },
  });
  const retrying = new RetryingSink(breaker, {
    ...config.retry,
    onRetry: (error, attempt, batchSize) => {
      metrics.retries.inc();
      logger.warn(
        { err: error, sqlstate: sqlstateOf(error), recognised: recognisedFailure(error) !== undefined, attempt, batchSize },
        'a batch write failed for a transient reason (or one the failure table does not know: recognised=false) and will be retried after a backoff; if this repeats, check that the database is up and reachable',
      );
    },
  });
  const isolating = new PoisonSplittingSink(retrying, { deadLetter, onSplit: () => metrics.poisonSplits.inc() });
  const sink = options.replaceWritePath
    ? options.replaceWritePath(base)
    : new GiveUpDeadLetterSink(isolating, { deadLetter, retryMaxAttempts: config.retry.maxAttempts, logger });
  return { sink, breaker, deadLetter };
}

/** What the log says when the breaker opens: how it will recover, and where to look (`target`: a non-database sink's name). */
function breakerOpenedMessage(target: string | undefined, recovery: 'probe' | 'window'): string {
  const what = target === undefined ? 'database' : target;
  const until =
    recovery === 'window'
      ? 'no batches are sent for BREAKER_OPEN_MS, then one test batch'
      : `no batches are sent until a probe ${target === undefined ? '(SELECT 1 on a fresh connection) ' : ''}answers`;
  const hint =
    recovery === 'probe'
      ? `Check that ${target === undefined ? 'the database' : 'it'} is up and reachable`
      : target === undefined
        ? 'The database answers but refuses the writes: look for locks, a full disk, a missing table'
        : 'It answers but refuses the writes: look at its limits and storage';
  return `${what} circuit breaker opened after consecutive failures: ${until}. ${hint}`;
}
