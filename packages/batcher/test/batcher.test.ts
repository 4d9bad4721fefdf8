import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type FlushReason, type FlushReport, type FlushResult, type ItemOutcome } from '../src/batcher.ts';
import { BatcherDrainTimeoutError } from '../src/errors.ts';
import { createFakeClock, type FakeClock } from './fake-clock.ts';

interface RecordedFlush {
  readonly batch: readonly number[];
  readonly reason: FlushReason;
}

/** A sink whose writes resolve or fail only when the test says so. */
class ControllableSink {
  readonly flushes: RecordedFlush[] = [];
  readonly #pending: { resolve: (result?: FlushResult) => void; reject: (error: Error) => void; signal: AbortSignal }[] = [];
  autoResolve = false;

  readonly flush = (batch: readonly number[], context: { reason: FlushReason; signal: AbortSignal }) => {
    this.flushes.push({ batch, reason: context.reason });
    if (this.autoResolve) return Promise.resolve();
    return new Promise<FlushResult | void>((resolve, reject) => this.#pending.push({ resolve, reject, signal: context.signal }));
  };

  get inFlight(): number {
    return this.#pending.length;
  }

  get signals(): AbortSignal[] {
    return this.#pending.map((p) => p.signal);
  }

  resolveNext(result?: FlushResult): void {
    const next = this.#pending.shift();
    assert.ok(next, 'no flush in flight');
    next.resolve(result);
  }

  rejectNext(error = new Error('sink failed')): void {
    const next = this.#pending.shift();
    assert.ok(next, 'no flush in flight');
    next.reject(error);
  }
}

function makeBatcher(
  clock: FakeClock,
  sink: ControllableSink,
  overrides: Partial<ConstructorParameters<typeof Batcher<number>>[0]> = {},
) {
  const reports: FlushReport[] = [];
  const batcher = new Batcher<number>({
    maxBatchSize: 10,
    maxBatchBytes: 1_000_000,
    maxWaitMs: 200,
    capacity: 100,
    capacityBytes: 1_000_000,
    flushConcurrency: 2,
    clock,
    sizeOf: () => 1,
    flush: sink.flush,
    onFlushSettled: (report) => reports.push(report),
    ...overrides,
  });
  return { batcher, reports };
}

function enqueueRange(batcher: Batcher<number>, from: number, count: number): void {
  for (let i = from; i < from + count; i += 1) assert.deepEqual(batcher.enqueue(i), { ok: true });
}

describe('Batcher triggers', () => {
  it('flushes 25 events at size 10 as two size flushes, then 5 on shutdown', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    sink.autoResolve = true;
    const { batcher } = makeBatcher(clock, sink);
    enqueueRange(batcher, 0, 25);
    assert.deepEqual(
      sink.flushes.map((f) => [f.reason, f.batch.length]),
      [
        ['size', 10],
        ['size', 10],
      ],
    );
    await batcher.shutdown(1000);
    assert.deepEqual(
      sink.flushes.map((f) => [f.reason, f.batch.length]),
      [
        ['size', 10],
        ['size', 10],
        ['shutdown', 5],
      ],
    );
    assert.deepEqual(sink.flushes.flatMap((f) => f.batch), Array.from({ length: 25 }, (_, i) => i));
  });

  it('flushes 3 events once, on time, maxWaitMs after the first event', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    sink.autoResolve = true;
    const { batcher } = makeBatcher(clock, sink);
    batcher.enqueue(1);
    await clock.tickAsync(150);
    batcher.enqueue(2);
    batcher.enqueue(3);
    await clock.tickAsync(49);
    assert.equal(sink.flushes.length, 0, 'no flush before maxWaitMs has passed since the first event');
    await clock.tickAsync(1);
    assert.deepEqual(sink.flushes, [{ batch: [1, 2, 3], reason: 'time' }]);
    await clock.tickAsync(1000);
    assert.equal(sink.flushes.length, 1, 'the timer does not fire again for an empty buffer');
  });

  it('seals a batch before an item would take it past maxBatchBytes', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    sink.autoResolve = true;
    const sizes = [300, 300, 300, 50, 1500, 10];
    const { batcher } = makeBatcher(clock, sink, { maxBatchBytes: 1000, sizeOf: (n) => n });
    for (const size of sizes) batcher.enqueue(size);
    await clock.tickAsync(200);
    assert.deepEqual(
      sink.flushes.map((f) => [f.reason, f.batch]),
      [
        ['bytes', [300, 300, 300, 50]],
        ['bytes', [1500]],
        ['time', [10]],
      ],
    );
  });

  it('hands each flush a distinct array that it never changes afterwards', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    sink.autoResolve = true;
    const { batcher } = makeBatcher(clock, sink, { maxBatchSize: 3 });
    enqueueRange(batcher, 0, 9);
    await clock.flushMicrotasks();
    const kept = sink.flushes.map((f) => f.batch);
    enqueueRange(batcher, 9, 2);
    await batcher.shutdown(1000);
    assert.equal(new Set(kept).size, 3);
    assert.deepEqual(kept, [
      [0, 1, 2],
      [3, 4, 5],
      [6, 7, 8],
    ]);
  });
});

describe('Batcher bounds and concurrency', () => {
  it('runs at most flushConcurrency flushes at once and keeps taking events meanwhile', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher } = makeBatcher(clock, sink, { flushConcurrency: 2 });
    enqueueRange(batcher, 0, 40);
    assert.equal(sink.inFlight, 2);
    assert.equal(sink.flushes.length, 2);
    assert.equal(batcher.depth, 40, 'in-flight and waiting events both count against capacity');
    sink.resolveNext();
    await clock.flushMicrotasks();
    assert.equal(sink.flushes.length, 3, 'a freed slot is taken by the next full batch at once');
    assert.equal(batcher.depth, 30);
    for (let remaining = 3; remaining > 0; remaining -= 1) {
      assert.ok(sink.inFlight <= 2);
      sink.resolveNext();
      await clock.flushMicrotasks();
    }
    assert.equal(sink.flushes.length, 4);
    assert.equal(batcher.depth, 0);
  });

  it('refuses events past capacity without side effects; a batch taken by a flush slot leaves the queue', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    let started = 0;
    const { batcher } = makeBatcher(clock, sink, { capacity: 20, flushConcurrency: 1, maxBatchSize: 10, onFlushStarted: () => (started += 1) });
    enqueueRange(batcher, 0, 10); // a full batch, taken by the only slot at once
    assert.equal(started, 1);
    assert.equal(batcher.queuedDepth, 0);
    enqueueRange(batcher, 10, 20); // 20 queued behind it
    assert.deepEqual(batcher.enqueue(99), { ok: false, reason: 'full' });
    assert.equal(batcher.depth, 30, 'unsettled: queued + in flight');
    assert.equal(batcher.queuedDepth, 20);
    assert.equal(batcher.counters.enqueued, 30);
    sink.resolveNext(); // the slot frees and takes the next batch: 10 leave the queue
    await clock.flushMicrotasks();
    assert.equal(started, 2);
    assert.equal(batcher.queuedDepth, 10);
    assert.equal(batcher.depth, 20);
    assert.deepEqual(batcher.enqueue(30), { ok: true });
  });

  it('refuses events past the byte budget', () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher } = makeBatcher(clock, sink, { capacityBytes: 100, sizeOf: (n) => n });
    assert.deepEqual(batcher.enqueue(60), { ok: true });
    assert.deepEqual(batcher.enqueue(41), { ok: false, reason: 'full' });
    assert.deepEqual(batcher.enqueue(40), { ok: true });
    assert.equal(batcher.depthBytes, 100);
  });

  it('reports each event outcome and counts a failed batch without blocking later ones', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher, reports } = makeBatcher(clock, sink, { maxBatchSize: 2, flushConcurrency: 1 });
    const outcomes: [number, ItemOutcome][] = [];
    for (let i = 0; i < 4; i += 1) batcher.enqueue(i, (outcome) => outcomes.push([i, outcome]));
    sink.rejectNext();
    await clock.flushMicrotasks();
    sink.resolveNext();
    await clock.flushMicrotasks();
    assert.deepEqual(outcomes, [
      [0, 'failed'],
      [1, 'failed'],
      [2, 'stored'],
      [3, 'stored'],
    ]);
    assert.equal(reports.length, 2);
    assert.ok(reports[0]!.error instanceof Error);
    assert.equal(reports[1]!.error, undefined);
    assert.deepEqual(batcher.counters, { enqueued: 4, flushedOk: 2, flushedFail: 2, rejected: 0, dropped: 0 });
  });
});

describe('Batcher shutdown', () => {
  it('gives ten concurrent callers the same drain, and refuses events once it began', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher } = makeBatcher(clock, sink);
    enqueueRange(batcher, 0, 5);
    const shutdowns = Array.from({ length: 10 }, () => batcher.shutdown(1000));
    assert.equal(new Set(shutdowns).size, 1);
    assert.deepEqual(batcher.enqueue(6), { ok: false, reason: 'closed' });
    sink.resolveNext();
    const settled = await Promise.allSettled(shutdowns);
    assert.ok(settled.every((s) => s.status === 'fulfilled'));
    assert.equal(batcher.state, 'stopped');
    assert.deepEqual(sink.flushes.map((f) => f.reason), ['shutdown']);
  });

  it('past the deadline, aborts the sink and returns every unstored event in the error', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher } = makeBatcher(clock, sink, { flushConcurrency: 1 });
    const outcomes: ItemOutcome[] = [];
    for (let i = 0; i < 25; i += 1) batcher.enqueue(i, (outcome) => outcomes.push(outcome));
    const shutdown = batcher.shutdown(5000);
    const failure = assert.rejects(shutdown, (error: unknown) => {
      assert.ok(error instanceof BatcherDrainTimeoutError);
      assert.equal(error.code, 'BATCHER_ERR_DRAIN_TIMEOUT');
      assert.deepEqual([...error.remaining].sort((a, b) => Number(a) - Number(b)), Array.from({ length: 25 }, (_, i) => i));
      assert.match(error.message, /25 events not yet stored/);
      return true;
    });
    await clock.tickAsync(5000);
    await failure;
    assert.equal(sink.signals[0]?.aborted, true, 'the in-flight write was told to give up');
    assert.deepEqual(outcomes, Array(25).fill('dropped'));
    // A sink that finally answers after the deadline changes no counter.
    sink.resolveNext();
    await clock.flushMicrotasks();
    const counters = batcher.counters;
    assert.deepEqual(counters, { enqueued: 25, flushedOk: 0, flushedFail: 0, rejected: 0, dropped: 25 });
  });

  it('keeps enqueued = flushedOk + flushedFail + rejected + dropped through a mixed run', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher } = makeBatcher(clock, sink, { maxBatchSize: 7, flushConcurrency: 1 });
    const outcomes = new Map<number, ItemOutcome>();
    for (let i = 0; i < 30; i += 1) batcher.enqueue(i, (outcome) => outcomes.set(i, outcome));
    // four size batches (one in flight, three waiting) and 2 buffered
    sink.resolveNext({ rejected: [1, 4] });
    await clock.flushMicrotasks();
    sink.rejectNext();
    await clock.flushMicrotasks();
    const shutdown = batcher.shutdown(1000).catch((error: unknown) => error);
    await clock.tickAsync(1000);
    const error = await shutdown;
    assert.ok(error instanceof BatcherDrainTimeoutError);
    const { enqueued, flushedOk, flushedFail, rejected, dropped } = batcher.counters;
    assert.deepEqual({ enqueued, flushedOk, flushedFail, rejected, dropped }, { enqueued: 30, flushedOk: 5, flushedFail: 7, rejected: 2, dropped: 16 });
    assert.equal(enqueued, flushedOk + flushedFail + rejected + dropped);
    assert.deepEqual([outcomes.get(0), outcomes.get(1), outcomes.get(4), outcomes.get(7), outcomes.get(29)], ['stored', 'rejected', 'rejected', 'failed', 'dropped']);
  });
});

describe('Batcher drain rate', () => {
  it('measures the drain rate from settled flushes and decays it while nothing settles', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    const { batcher } = makeBatcher(clock, sink, { flushConcurrency: 1 });
    assert.equal(batcher.drainRatePerSecond, 0);
    enqueueRange(batcher, 0, 30);
    sink.resolveNext();
    await clock.flushMicrotasks();
    await clock.tickAsync(100);
    sink.resolveNext();
    await clock.flushMicrotasks();
    assert.equal(batcher.drainRatePerSecond, 100, '10 events settled 100 ms apart');
    await clock.tickAsync(4000);
    assert.equal(batcher.drainRatePerSecond, 25, 'four silent seconds quarter the rate');
  });
});

describe('Batcher partitions', () => {
  const byParity = (n: number) => (n % 2 === 0 ? 'even' : 'odd');

  it('keeps one open batch per partition, each with its own size and time triggers; a batch never mixes them', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    sink.autoResolve = true;
    const { batcher, reports } = makeBatcher(clock, sink, { maxBatchSize: 3, partitionOf: byParity });
    enqueueRange(batcher, 0, 7); // even: 0 2 4 (full) 6; odd: 1 3 5 (full)
    assert.deepEqual(sink.flushes.map((f) => [f.reason, f.batch]), [
      ['size', [0, 2, 4]],
      ['size', [1, 3, 5]],
    ]);
    assert.equal(batcher.openPartitions, 1);
    await clock.tickAsync(200);
    assert.deepEqual(sink.flushes.at(-1), { batch: [6], reason: 'time' });
    assert.equal(batcher.openPartitions, 0, 'an idle partition holds nothing');
    assert.deepEqual(reports.map((r) => r.partition), ['even', 'odd', 'even']);
  });

  it('bounds the open partitions: a new one past the limit seals the oldest open batch', async () => {
    const clock = createFakeClock();
    const sink = new ControllableSink();
    sink.autoResolve = true;
    const { batcher } = makeBatcher(clock, sink, { maxBatchSize: 100, partitionOf: (n) => `p${n % 10}`, maxOpenPartitions: 3 });
    enqueueRange(batcher, 0, 4); // p0 p1 p2 open, p3 arrives
    assert.deepEqual(sink.flushes, [{ batch: [0], reason: 'partitions' }]);
    assert.equal(batcher.openPartitions, 3);
    await batcher.shutdown(1000);
    assert.deepEqual(sink.flushes.slice(1).map((f) => f.reason), ['shutdown', 'shutdown', 'shutdown']);
  });
});
