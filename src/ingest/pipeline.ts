import type { Logger } from 'pino';
import { SpanStatusCode, type Attributes } from '@opentelemetry/api';
import {
  AdaptiveWindow,
  adaptiveBounds,
  Batcher,
  BatcherDrainTimeoutError,
  type EnqueueResult,
  type FlushReason,
  type FlushReport,
  type FlushResult,
  type Waiter,
  type WindowChange,
} from '@audit-ingest/batcher';
import type { Clock } from '../clock.ts';
import type { Config } from '../config.ts';
import { isCongestionSignal } from '../db/congestion-signal.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink } from '../sink/sink.ts';
import type { IngestMetrics } from '../telemetry/metrics.ts';
import { linksTo, tracer } from '../telemetry/tracing.ts';
import { RoomWaiters } from './room-waiters.ts';

/** How often recovery looks for room in a full queue (start-up only, never the request path). */
const RECOVERY_WAIT_FOR_ROOM_MS = 20;

export interface PipelineOptions {
  readonly batch: Config['batch'];
  readonly queue: Pick<Config['queue'], 'capacity' | 'maxBytes'>;
  /** The whole write path (sink-chain.ts): it stores, dead-letters, or throws only when aborted. */
  readonly sink: Sink;
  /** Called with every batch once its events are settled (stored, duplicate, dead-lettered). */
  readonly onSettled?: (batch: readonly QueuedEvent[]) => void;
  readonly clock: Clock;
  readonly metrics: IngestMetrics;
  readonly logger: Logger;
}

/**
 * The batcher wired to a sink, with per-batch metrics and logs: the only view of the queue (depth,
 * room, drain rate, tenant depths, draining). The HTTP layer enqueues here; the runtime drains it.
 *
 * Modes: accepting → (beginDrain) draining → (shutdown settles) stopped. While draining, intake
 * answers 503 and only events of requests already in flight may still be queued.
 */
export class IngestPipeline {
  readonly #batcher: Batcher<QueuedEvent>;
  readonly #sink: Sink;
  readonly #partitioned: boolean;
  readonly #onSettled: ((batch: readonly QueuedEvent[]) => void) | undefined;
  readonly #metrics: IngestMetrics;
  readonly #logger: Logger;
  readonly #clock: Clock;
  /** BATCH_WINDOW=adaptive: moves the batcher's size and wait; undefined with a static window. */
  readonly #adaptiveWindow: AdaptiveWindow | undefined;
  #draining = false;
  #reservedEvents = 0;
  readonly #capacityBytes: number;
  #reservedBytes = 0;
  /**
   * Requests admitted but waiting for room (admission.ts), woken whenever a batch settles, ended
   * on drain. Bounded: at most 4 × the queue's capacity of events and 1024 requests wait.
   */
  readonly waiters: RoomWaiters;

  constructor(options: PipelineOptions) {
    this.#capacityBytes = options.queue.maxBytes;
    this.waiters = new RoomWaiters({ maxRequests: 1024, maxEvents: 4 * options.queue.capacity });
    this.#sink = options.sink;
    this.#onSettled = options.onSettled;
    this.#partitioned = options.batch.partition === 'tenant';
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#clock = options.clock;
    this.#batcher = new Batcher<QueuedEvent>({
      maxBatchSize: options.batch.maxSize,
      maxBatchBytes: options.batch.maxBytes,
      maxWaitMs: options.batch.maxWaitMs,
      flushPolicy: options.batch.flushPolicy,
      flushConcurrency: options.batch.flushConcurrency,
      capacity: options.queue.capacity,
      capacityBytes: options.queue.maxBytes,
      clock: options.clock,
      sizeOf: (event) => event.bytes,
      ...(options.batch.partition === 'tenant' ? { partitionOf: tenantOf } : {}),
      groupOf: tenantOf,
      maxOpenPartitions: options.batch.maxOpenPartitions,
      flush: (batch, { signal, reason }) => this.#write(batch, signal, reason),
      onFlushSettled: (report) => this.#record(report),
      // A batch taken by a flush slot left the queue: waiting requests may fit now (after the
      // current enqueue, not inside it).
      onFlushStarted: () => queueMicrotask(() => this.waiters.wake()),
    });
    const initialWindow = { maxBatchSize: options.batch.maxSize, maxWaitMs: options.batch.maxWaitMs };
    this.#adaptiveWindow =
      options.batch.window === 'adaptive'
        ? new AdaptiveWindow({
            initial: initialWindow,
            ...adaptiveBounds(initialWindow, options.queue.capacity, options.batch.latencySloMs),
            latencySloMs: options.batch.latencySloMs,
            now: () => options.clock.now(),
          })
        : undefined;
    const { metrics } = options;
    metrics.batchWindowSize.set(initialWindow.maxBatchSize);
    metrics.batchWindowWait.set(initialWindow.maxWaitMs / 1000);
    metrics.queueCapacity.set(options.queue.capacity);
    metrics.setQueueDepthSource(() => this.#batcher.queuedDepth);
    metrics.setTenantDepthSource(() => this.#batcher.groupDepths());
  }

  /** Events accepted and not yet settled: queued or being written. */
  get depth(): number {
    return this.#batcher.depth;
  }

  /**
   * Events waiting to be written (accepted, not yet taken by a flush slot): the queue depth that
   * QUEUE_CAPACITY bounds and the 80 % / 60 % marks read. Batches being written are out of it.
   */
  get queuedDepth(): number {
    return this.#batcher.queuedDepth;
  }

  get capacity(): number {
    return this.#batcher.capacity;
  }

  /** Events settled per second, smoothed (for Retry-After). */
  get drainRatePerSecond(): number {
    return this.#batcher.drainRatePerSecond;
  }

  /** When the oldest unsettled event was accepted (clock ms), or undefined when none is. */
  get oldestEnqueuedAtMs(): number | undefined {
    return this.#batcher.oldestEnqueuedAtMs;
  }

  /** Room for `count` more events of `bytes` in total, right now? (Reservations not counted.) */
  hasRoomFor(count: number, bytes: number): boolean {
    return this.#batcher.hasRoomFor(count, bytes);
  }

  /** Could `count` events of `bytes` ever fit, in an empty queue? */
  couldEverHold(count: number, bytes: number): boolean {
    return count <= this.#batcher.capacity && bytes <= this.#capacityBytes;
  }

  /** Room for `count` more events of `bytes` besides every reservation, right now? */
  hasUnreservedRoomFor(count: number, bytes: number): boolean {
    return this.#batcher.hasRoomFor(this.#reservedEvents + count, this.#reservedBytes + bytes);
  }

  /** Events whose room is reserved: admitted requests waiting for their log fsync. */
  get reservedEvents(): number {
    return this.#reservedEvents;
  }

  /**
   * Hold room for events about to be written to the log, so a request behind them sees the queue
   * as already holding them (accept-events.ts). Released once they are enqueued or refused.
   */
  reserve(count: number, bytes: number): void {
    this.#reservedEvents += count;
    this.#reservedBytes += bytes;
  }

  release(count: number, bytes: number): void {
    this.#reservedEvents -= count;
    this.#reservedBytes -= bytes;
  }

  /** True once shutdown has begun: intake answers 503 from then on. */
  get draining(): boolean {
    return this.#draining;
  }

  beginDrain(): void {
    this.#draining = true;
    this.waiters.close();
  }

  enqueue(event: QueuedEvent, waiter?: Waiter): EnqueueResult {
    const result = this.#batcher.enqueue(event, waiter);
    if (result.ok) this.#metrics.eventsAccepted.inc();
    return result;
  }

  /**
   * Queue an event that was already acknowledged by an earlier run (spill file, WAL replay),
   * waiting for room rather than refusing it. Resolves once it is queued.
   */
  async enqueueWhenRoom(event: QueuedEvent, waiter?: Waiter): Promise<void> {
    while (!this.enqueue(event, waiter).ok) {
      if (this.#batcher.state !== 'running') throw new Error('the pipeline stopped before a recovered event could be queued');
      await new Promise((resolve) => setTimeout(resolve, RECOVERY_WAIT_FOR_ROOM_MS));
    }
  }

  /** Events accepted since start. */
  counters(): { accepted: number } {
    return { accepted: this.#batcher.counters.enqueued };
  }

  /** Events of `tenant` accepted and not yet settled. */
  tenantDepth(tenant: string): number {
    return this.#batcher.depthOf(tenant);
  }

  /**
   * Drain within `deadlineMs`. Resolves with the events that could not be stored in time (empty
   * when everything was committed); the caller spills those.
   */
  async shutdown(deadlineMs: number): Promise<readonly QueuedEvent[]> {
    this.#draining = true;
    this.waiters.close();
    try {
      await this.#batcher.shutdown(deadlineMs);
      return [];
    } catch (error) {
      if (!(error instanceof BatcherDrainTimeoutError)) throw error;
      const remaining = error.remaining as readonly QueuedEvent[];
      this.#logger.error(
        { events: remaining.length, deadlineMs },
        'shutdown deadline passed with events not yet stored; they are kept (write-ahead log or spill file) and stored at the next start. Check why the database was slow or unreachable',
      );
      return remaining;
    }
  }

  /** A write attempt failed (it may be retried): with an adaptive window, congestion shrinks it. */
  noteWriteFailure(error: unknown): void {
    if (this.#adaptiveWindow && isCongestionSignal(error)) this.#applyWindowChange(this.#adaptiveWindow.noteCongestion());
  }

  #applyWindowChange(change: WindowChange | undefined): void {
    if (!change) return;
    this.#metrics.batchWindowDecisions.inc({ reason: change.decision });
    if (change.decision === 'hold') return;
    this.#batcher.setWindow(change.window);
    this.#metrics.batchWindowSize.set(change.window.maxBatchSize);
    this.#metrics.batchWindowWait.set(change.window.maxWaitMs / 1000);
    this.#logger.debug({ decision: change.decision, window: change.window, latencyEstimateMs: change.latencyEstimateMs }, 'adaptive batch window changed');
  }

  /** Account for events written to the spill file, so accepted = stored + failed + dropped holds. */
  recordSpilled(count: number, reason: 'spilled' | 'left_in_wal' = 'spilled'): void {
    this.#metrics.eventsDropped.inc({ reason }, count);
  }

  /**
   * One flush, in a `batch.flush` span linked to the request span of every event it holds (the
   * fan-in, visible end to end); retries and poison splits are its child spans.
   */
  async #write(batch: readonly QueuedEvent[], signal: AbortSignal, reason: FlushReason): Promise<FlushResult> {
    const attributes: Attributes = {
      'batch.size': batch.length,
      'batch.reason': reason,
      'batch.bytes': batch.reduce((sum, event) => sum + event.bytes, 0),
    };
    if (this.#partitioned) attributes['batch.tenant'] = batch[0]!.tenant;
    return tracer().startActiveSpan('batch.flush', { links: linksTo(batch.map((event) => event.requestSpan)), attributes }, async (span) => {
      try {
        const result = await this.#writeBatch(batch, signal);
        span.setAttributes({ 'batch.outcome': 'stored', 'batch.dead_lettered': result.rejected?.length ?? 0 });
        return result;
      } catch (error) {
        span.setAttribute('batch.outcome', 'failed');
        span.recordException(error as Error);
        span.setStatus({ code: SpanStatusCode.ERROR });
        throw error;
      } finally {
        span.end();
      }
    });
  }

  async #writeBatch(batch: readonly QueuedEvent[], signal: AbortSignal): Promise<FlushResult> {
    const { inserted, deadLettered } = await this.#sink.write(batch, { signal });
    const metrics = this.#metrics;
    metrics.eventsStored.inc(inserted);
    const duplicates = batch.length - inserted - deadLettered.length;
    if (duplicates > 0) metrics.eventsDuplicate.inc(duplicates);
    if (deadLettered.length > 0) metrics.eventsDeadLettered.inc(deadLettered.length);
    this.#onSettled?.(batch);
    return { rejected: deadLettered };
  }

  #record(report: FlushReport): void {
    // Room was freed (the batcher has already counted the batch out of its depth).
    this.waiters.wake();
    const metrics = this.#metrics;
    metrics.flushes.inc({ reason: report.reason });
    metrics.batchSize.observe(report.size);
    metrics.batchBytes.observe(report.bytes);
    metrics.flushDuration.observe(report.durationMs / 1000);
    if (report.error !== undefined) {
      metrics.eventsFailed.inc(report.size);
      this.#logger.error(
        { err: report.error, batchSize: report.size, batchBytes: report.bytes, reason: report.reason },
        'a batch failed to commit and could not be dead-lettered; its events are counted in ingest_events_failed_total. Check the database and the dead-letter directory',
      );
      return;
    }
    metrics.copyBytes.inc(report.bytes);
    const nowMs = this.#clock.now();
    metrics.batchLatency.observeElapsedSince(nowMs, report.enqueuedAtMs);
    const openedAtMs = report.enqueuedAtMs[0];
    if (this.#adaptiveWindow && openedAtMs !== undefined) {
      const filled = report.reason === 'size' || report.reason === 'bytes';
      this.#applyWindowChange(this.#adaptiveWindow.observeBatch({ openedAtMs, latencyMs: nowMs - openedAtMs, filled, timed: report.reason === 'time', flushMs: report.durationMs }));
    }
    this.#logger.debug(
      { batchSize: report.size, batchBytes: report.bytes, reason: report.reason, durationMs: report.durationMs, deadLettered: report.rejected },
      'batch settled',
    );
  }
}

function tenantOf(event: QueuedEvent): string {
  return event.tenant;
}
