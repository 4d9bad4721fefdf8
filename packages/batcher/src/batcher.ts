import type { Clock, TimerHandle } from './clock.ts';
import { BatcherClosedError, BatcherDrainTimeoutError } from './errors.ts';

/**
 * Why a batch left the buffer. `partitions`: sealed early to make room for a new partition when
 * maxOpenPartitions batches were already open. `natural`: flushPolicy 'natural' sealed it because
 * a flush slot was free at the end of the event-loop turn in which it grew.
 */
export type FlushReason = 'size' | 'bytes' | 'time' | 'shutdown' | 'partitions' | 'natural';

/**
 * When a batch that has not reached its size or bytes leaves:
 *  - `window`: maxWaitMs after its first item (the linger timer);
 *  - `natural`: as soon as a flush slot is free, at the end of the event-loop turn in which items
 *    arrived (so whatever arrived together goes together). While every slot is busy the batch
 *    grows; it is what accumulated while the previous writes ran ("smart batching"). No timer.
 */
export type FlushPolicy = 'window' | 'natural';

/** The limits a batch is sealed on; setWindow changes them while running (adaptive window). */
export interface BatchWindow {
  readonly maxBatchSize: number;
  readonly maxWaitMs: number;
}

/**
 * What became of one item: `stored` (including an item the sink found already stored),
 * `rejected` (the sink refused it for good and set it aside, e.g. in a dead-letter queue),
 * `failed` (its batch failed), `dropped` (left behind by a shutdown past its deadline).
 */
export type ItemOutcome = 'stored' | 'rejected' | 'failed' | 'dropped';

export interface FlushContext {
  readonly reason: FlushReason;
  /** Aborted when the shutdown deadline passes: the sink must give up promptly. */
  readonly signal: AbortSignal;
}

/** What a flush may say about individual items; every item not named was stored. */
export interface FlushResult {
  /** Indexes into the batch of the items the sink refused for good. */
  readonly rejected?: readonly number[];
}

/** The only thing the batcher knows about storage. */
export type FlushFunction<T> = (batch: readonly T[], context: FlushContext) => Promise<FlushResult | void>;

export interface FlushReport {
  readonly reason: FlushReason;
  readonly partition: string;
  readonly size: number;
  readonly bytes: number;
  readonly durationMs: number;
  /** Enqueue time of each item: batch latency is measured from these, per batch. */
  readonly enqueuedAtMs: readonly number[];
  /** How many items the sink refused for good (they count as settled, not stored). */
  readonly rejected: number;
  readonly error?: unknown;
}

export interface BatcherOptions<T> {
  readonly maxBatchSize: number;
  readonly maxBatchBytes: number;
  readonly maxWaitMs: number;
  /** Default 'window'. */
  readonly flushPolicy?: FlushPolicy;
  /**
   * Runs a callback once the current event-loop turn's I/O callbacks have run (flushPolicy
   * 'natural'). Default setImmediate; not on the Clock: it is an ordering, not a time.
   */
  readonly atEndOfTurn?: (callback: () => void) => void;
  /**
   * Items waiting to be written (buffered in open batches + sealed batches waiting for a slot)
   * never exceed this. Items in flight — taken by one of flushConcurrency writes — are out of the
   * queue (as in OpenTelemetry's BatchSpanProcessor): at most flushConcurrency batches more are
   * held, so everything unsettled stays within capacity + flushConcurrency × maxBatchSize.
   */
  readonly capacity: number;
  readonly capacityBytes: number;
  readonly flushConcurrency: number;
  readonly clock: Clock;
  readonly sizeOf: (item: T) => number;
  readonly flush: FlushFunction<T>;
  /** Called once per flush, after it settles: the place for per-batch metrics and logs. */
  readonly onFlushSettled?: (report: FlushReport) => void;
  /** Called when batches were taken by flush slots: their items left the queue, so there is room. */
  readonly onFlushStarted?: () => void;
  /**
   * Batch items by partition (e.g. tenant): each partition has an open batch of its own, sealed on
   * its own size, bytes and time triggers, so a batch never mixes partitions. Capacity, the flush
   * slots and the FIFO of sealed batches stay shared. Undefined: one partition.
   */
  readonly partitionOf?: (item: T) => string;
  /** Most open batches at once; a new partition past it seals the oldest open one. Default 1024. */
  readonly maxOpenPartitions?: number;
  /**
   * Count unsettled items by group (e.g. tenant) whether or not batches are partitioned: the
   * batcher settles these counts at the same moments as its depth, so they can never drift.
   */
  readonly groupOf?: (item: T) => string;
}

export type Waiter = (outcome: ItemOutcome) => void;

export type EnqueueResult = { readonly ok: true } | { readonly ok: false; readonly reason: 'full' | 'closed' };

export interface BatcherCounters {
  enqueued: number;
  flushedOk: number;
  flushedFail: number;
  rejected: number;
  dropped: number;
}

interface Batch<T> {
  readonly partition: string;
  readonly items: T[];
  readonly enqueuedAtMs: number[];
  readonly waiters: (Waiter | undefined)[];
  bytes: number;
  reason: FlushReason;
  abandoned: boolean;
}

type State = 'running' | 'draining' | 'stopped';

/**
 * A bounded, size/bytes/time-triggered batcher. Knows nothing of HTTP or SQL.
 *
 * States: running → (shutdown) draining → stopped. While running, items enter the open batch; the
 * open batch is sealed when it reaches maxBatchSize, when the next item would take it past
 * maxBatchBytes, or (flushPolicy 'window') maxWaitMs after its first item, or (flushPolicy
 * 'natural') at the end of an event-loop turn in which a flush slot is free. Sealed batches wait
 * in FIFO order for one of flushConcurrency slots. A sealed batch is never touched again, so a
 * sink may keep the array.
 */
export class Batcher<T> {
  readonly #options: BatcherOptions<T>;
  /** Open batches by partition, oldest first; a partition without an open batch has no entry. */
  readonly #open = new Map<string, { batch: Batch<T>; timer: TimerHandle | undefined }>();
  readonly #sealed: Batch<T>[] = [];
  readonly #inFlight = new Set<Batch<T>>();
  #pendingItems = 0;
  /** Items and bytes of the batches in flight (part of #pendingItems / #pendingBytes, not of the queue). */
  #inFlightItems = 0;
  #inFlightBytes = 0;
  /** Unsettled items per group (groupOf); a group with none has no entry. */
  readonly #groupDepth = new Map<string, number>();
  #pendingBytes = 0;
  #state: State = 'running';
  #shutdownPromise: Promise<void> | undefined;
  #idleResolvers: (() => void)[] = [];
  readonly #abort = new AbortController();
  readonly #counters: BatcherCounters = { enqueued: 0, flushedOk: 0, flushedFail: 0, rejected: 0, dropped: 0 };
  /** Exponentially weighted drain rate, items per second, measured over settled flushes. */
  #drainRatePerSecond = 0;
  #lastSettledAtMs: number | undefined;
  #window: BatchWindow;
  readonly #natural: boolean;
  readonly #atEndOfTurn: (callback: () => void) => void;
  /** A natural-flush check is scheduled for the end of this turn (at most one at a time). */
  #naturalCheckPending = false;

  constructor(options: BatcherOptions<T>) {
    for (const key of ['maxBatchSize', 'maxBatchBytes', 'capacity', 'capacityBytes', 'flushConcurrency'] as const) {
      if (!(options[key] >= 1)) throw new RangeError(`${key} must be at least 1`);
    }
    if (!(options.maxWaitMs >= 0)) throw new RangeError('maxWaitMs must be non-negative');
    this.#options = options;
    this.#window = { maxBatchSize: options.maxBatchSize, maxWaitMs: options.maxWaitMs };
    this.#natural = options.flushPolicy === 'natural';
    this.#atEndOfTurn = options.atEndOfTurn ?? ((callback) => setImmediate(callback));
  }

  /** The size and wait batches are sealed on now. */
  get window(): BatchWindow {
    return this.#window;
  }

  /**
   * Change the size and wait limits (the adaptive window). The size applies to the open batches
   * from their next item on; the wait to batches opened from now on.
   */
  setWindow(window: BatchWindow): void {
    if (!(window.maxBatchSize >= 1)) throw new RangeError('maxBatchSize must be at least 1');
    if (!(window.maxWaitMs >= 0)) throw new RangeError('maxWaitMs must be non-negative');
    this.#window = { maxBatchSize: window.maxBatchSize, maxWaitMs: window.maxWaitMs };
  }

  static #newBatch<T>(partition: string): Batch<T> {
    return { partition, items: [], enqueuedAtMs: [], waiters: [], bytes: 0, reason: 'time', abandoned: false };
  }

  /** Open batches right now (one per active partition). */
  get openPartitions(): number {
    return this.#open.size;
  }

  /** Items accepted and not yet settled (in the queue or in flight). */
  get depth(): number {
    return this.#pendingItems;
  }

  /** Items waiting to be written: accepted, not yet taken by a flush slot (what capacity bounds). */
  get queuedDepth(): number {
    return this.#pendingItems - this.#inFlightItems;
  }

  /** Unsettled items of one group (groupOf). */
  depthOf(group: string): number {
    return this.#groupDepth.get(group) ?? 0;
  }

  /** Every group with unsettled items, and how many. */
  groupDepths(): IterableIterator<[string, number]> {
    return this.#groupDepth.entries();
  }

  /** When the oldest unsettled item was accepted (clock ms), or undefined when none is. */
  get oldestEnqueuedAtMs(): number | undefined {
    let oldest: number | undefined;
    const consider = (batch: Batch<T>) => {
      const first = batch.enqueuedAtMs[0];
      if (first !== undefined && (oldest === undefined || first < oldest)) oldest = first;
    };
    for (const batch of this.#inFlight) consider(batch);
    for (const batch of this.#sealed) consider(batch);
    for (const { batch } of this.#open.values()) consider(batch);
    return oldest;
  }

  get depthBytes(): number {
    return this.#pendingBytes;
  }

  get capacity(): number {
    return this.#options.capacity;
  }

  get state(): State {
    return this.#state;
  }

  /**
   * Items settled per second, smoothed over recent flushes. When nothing has settled for over a
   * second (a stalled database), the rate decays with the silence instead of staying stale.
   */
  get drainRatePerSecond(): number {
    if (this.#lastSettledAtMs === undefined) return 0;
    const silentMs = this.#options.clock.now() - this.#lastSettledAtMs;
    return silentMs > 1000 ? (this.#drainRatePerSecond * 1000) / silentMs : this.#drainRatePerSecond;
  }

  get counters(): Readonly<BatcherCounters> {
    return { ...this.#counters };
  }

  /** Room in the queue for `count` more items of `bytes` in total, right now? */
  hasRoomFor(count: number, bytes: number): boolean {
    return (
      this.queuedDepth + count <= this.#options.capacity &&
      this.#pendingBytes - this.#inFlightBytes + bytes <= this.#options.capacityBytes
    );
  }

  /**
   * Accept one item, or refuse it without side effects. `waiter`, when given, is called exactly
   * once with the item's outcome.
   */
  enqueue(item: T, waiter?: Waiter): EnqueueResult {
    if (this.#state !== 'running') return { ok: false, reason: 'closed' };
    const bytes = this.#options.sizeOf(item);
    if (!this.hasRoomFor(1, bytes)) return { ok: false, reason: 'full' };

    const partition = this.#options.partitionOf?.(item) ?? '';
    const current = this.#open.get(partition);
    if (current && current.batch.bytes + bytes > this.#options.maxBatchBytes) this.#seal(partition, 'bytes');
    const batch = this.#openBatch(partition);
    batch.items.push(item);
    batch.enqueuedAtMs.push(this.#options.clock.now());
    batch.waiters.push(waiter);
    batch.bytes += bytes;
    this.#pendingItems += 1;
    this.#pendingBytes += bytes;
    if (this.#options.groupOf) {
      const group = this.#options.groupOf(item);
      this.#groupDepth.set(group, (this.#groupDepth.get(group) ?? 0) + 1);
    }
    this.#counters.enqueued += 1;

    if (batch.items.length >= this.#window.maxBatchSize) this.#seal(partition, 'size');
    else if (batch.bytes >= this.#options.maxBatchBytes) this.#seal(partition, 'bytes');
    else if (this.#natural) this.#scheduleNaturalCheck();
    return { ok: true };
  }

  /** Flush slots neither running a flush nor claimed by a sealed batch waiting for one. */
  #freeSlots(): number {
    return this.#options.flushConcurrency - this.#inFlight.size - this.#sealed.length;
  }

  /** Once per turn: if a slot is free then, open batches leave (oldest first), one per free slot. */
  #scheduleNaturalCheck(): void {
    if (this.#naturalCheckPending || this.#freeSlots() <= 0 || this.#open.size === 0) return;
    this.#naturalCheckPending = true;
    this.#atEndOfTurn(() => {
      this.#naturalCheckPending = false;
      while (this.#freeSlots() > 0 && this.#open.size > 0) {
        this.#seal(this.#open.keys().next().value as string, 'natural');
      }
    });
  }

  /** The partition's open batch, opened (with its timer) if it has none. */
  #openBatch(partition: string): Batch<T> {
    const existing = this.#open.get(partition);
    if (existing) return existing.batch;
    if (this.#open.size >= (this.#options.maxOpenPartitions ?? 1024)) {
      const oldest = this.#open.keys().next().value as string;
      this.#seal(oldest, 'partitions');
    }
    const batch = Batcher.#newBatch<T>(partition);
    // Natural flushing has no linger timer: a batch waits for a slot, never for time.
    const timer = this.#natural
      ? undefined
      : this.#options.clock.setTimeout(() => {
          if (this.#open.get(partition)?.batch === batch) this.#seal(partition, 'time');
        }, this.#window.maxWaitMs);
    this.#open.set(partition, { batch, timer });
    return batch;
  }

  #seal(partition: string, reason: FlushReason): void {
    const open = this.#open.get(partition);
    if (!open) return;
    this.#open.delete(partition);
    if (open.timer !== undefined) this.#options.clock.clearTimeout(open.timer);
    open.batch.reason = reason;
    this.#sealed.push(open.batch);
    this.#pump();
  }

  #pump(): void {
    let started = false;
    while (this.#inFlight.size < this.#options.flushConcurrency && this.#sealed.length > 0) {
      const batch = this.#sealed.shift()!;
      this.#inFlight.add(batch);
      this.#inFlightItems += batch.items.length;
      this.#inFlightBytes += batch.bytes;
      started = true;
      void this.#runFlush(batch);
    }
    if (started) this.#options.onFlushStarted?.();
  }

  async #runFlush(batch: Batch<T>): Promise<void> {
    const startedAtMs = this.#options.clock.now();
    let error: unknown;
    let failed = false;
    let rejected: readonly number[] = [];
    try {
      const result = await this.#options.flush(batch.items, { reason: batch.reason, signal: this.#abort.signal });
      rejected = result?.rejected ?? [];
    } catch (caught) {
      failed = true;
      error = caught;
    }
    this.#inFlight.delete(batch);
    if (batch.abandoned) return; // already counted as dropped when the drain deadline passed
    this.#inFlightItems -= batch.items.length;
    this.#inFlightBytes -= batch.bytes;

    const size = batch.items.length;
    this.#pendingItems -= size;
    this.#pendingBytes -= batch.bytes;
    this.#settleGroups(batch.items);
    if (failed) this.#counters.flushedFail += size;
    else {
      this.#counters.flushedOk += size - rejected.length;
      this.#counters.rejected += rejected.length;
    }
    const settledAtMs = this.#options.clock.now();
    this.#updateDrainRate(size, settledAtMs);
    this.#options.onFlushSettled?.({
      reason: batch.reason,
      partition: batch.partition,
      size,
      bytes: batch.bytes,
      durationMs: settledAtMs - startedAtMs,
      enqueuedAtMs: batch.enqueuedAtMs,
      rejected: rejected.length,
      ...(failed ? { error } : {}),
    });
    Batcher.#notify(batch, failed ? 'failed' : 'stored', rejected);
    this.#pump();
    if (this.#natural) this.#scheduleNaturalCheck();
    this.#checkIdle();
  }

  #settleGroups(items: readonly T[]): void {
    const groupOf = this.#options.groupOf;
    if (!groupOf) return;
    for (const item of items) {
      const group = groupOf(item);
      const left = (this.#groupDepth.get(group) ?? 1) - 1;
      if (left > 0) this.#groupDepth.set(group, left);
      else this.#groupDepth.delete(group);
    }
  }

  #updateDrainRate(size: number, settledAtMs: number): void {
    const last = this.#lastSettledAtMs;
    this.#lastSettledAtMs = settledAtMs;
    if (last === undefined) return;
    const elapsedMs = Math.max(settledAtMs - last, 1);
    const instant = (size * 1000) / elapsedMs;
    this.#drainRatePerSecond =
      this.#drainRatePerSecond === 0 ? instant : this.#drainRatePerSecond * 0.8 + instant * 0.2;
  }

  static #notify<T>(batch: Batch<T>, outcome: ItemOutcome, rejected: readonly number[] = []): void {
    const rejectedSet = rejected.length > 0 ? new Set(rejected) : undefined;
    batch.waiters.forEach((waiter, index) => waiter?.(rejectedSet?.has(index) ? 'rejected' : outcome));
  }

  #checkIdle(): void {
    if (this.#inFlight.size > 0 || this.#sealed.length > 0 || this.#open.size > 0) return;
    const resolvers = this.#idleResolvers;
    this.#idleResolvers = [];
    for (const resolve of resolvers) resolve();
  }

  /** Settles when nothing is buffered, waiting or in flight. */
  #whenIdle(): Promise<void> {
    return new Promise((resolve) => {
      this.#idleResolvers.push(resolve);
      this.#checkIdle();
    });
  }

  /**
   * Stop intake and flush everything within `deadlineMs`. Idempotent: every caller gets the same
   * promise. Past the deadline, in-flight flushes are aborted and the promise rejects with a
   * BatcherDrainTimeoutError holding every item not known to be stored (for a spill file); those
   * items count as dropped.
   */
  shutdown(deadlineMs: number): Promise<void> {
    this.#shutdownPromise ??= this.#drain(deadlineMs);
    return this.#shutdownPromise;
  }

  async #drain(deadlineMs: number): Promise<void> {
    this.#state = 'draining';
    for (const partition of [...this.#open.keys()]) this.#seal(partition, 'shutdown');
    let timer: TimerHandle | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = this.#options.clock.setTimeout(() => resolve('timeout'), deadlineMs);
    });
    const outcome = await Promise.race([this.#whenIdle().then(() => 'idle' as const), timedOut]);
    if (timer !== undefined) this.#options.clock.clearTimeout(timer);
    if (outcome === 'idle') {
      this.#state = 'stopped';
      return;
    }
    const leftBehind = [...this.#inFlight, ...this.#sealed];
    this.#sealed.length = 0;
    const items: T[] = [];
    for (const batch of leftBehind) {
      batch.abandoned = true;
      items.push(...batch.items);
      Batcher.#notify(batch, 'dropped');
    }
    this.#counters.dropped += items.length;
    this.#pendingItems = 0;
    this.#pendingBytes = 0;
    this.#inFlightItems = 0;
    this.#inFlightBytes = 0;
    this.#groupDepth.clear();
    this.#state = 'stopped';
    this.#abort.abort(new BatcherClosedError('shutdown deadline passed'));
    throw new BatcherDrainTimeoutError(deadlineMs, items);
  }
}
