import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type FlushReason } from '../src/batcher.ts';
import { createFakeClock, type FakeClock } from './fake-clock.ts';

/**
 * flushPolicy 'natural' on a fake clock with a hand-cranked end of turn: `endTurn()` runs what the
 * batcher scheduled for the end of the current event-loop turn, so every step is deterministic.
 */
type Options = ConstructorParameters<typeof Batcher<number>>[0];

/** Size 10, wait 200 ms, two slots, every item 1 byte. */
function batcherOptions(clock: FakeClock, flush: Options['flush']): Options {
  return { maxBatchSize: 10, maxBatchBytes: 1_000_000, maxWaitMs: 200, capacity: 100, capacityBytes: 1_000_000, flushConcurrency: 2, clock, sizeOf: () => 1, flush };
}

function naturalBatcher(clock: FakeClock, overrides: Partial<Options> = {}) {
  const flushes: { batch: readonly number[]; reason: FlushReason }[] = [];
  const pending: (() => void)[] = [];
  const endOfTurn: (() => void)[] = [];
  const batcher = new Batcher<number>({
    ...batcherOptions(clock, () => Promise.resolve()),
    flushPolicy: 'natural',
    atEndOfTurn: (callback) => endOfTurn.push(callback),
    flush: (batch, { reason }) => {
      flushes.push({ batch, reason });
      return new Promise<void>((resolve) => pending.push(resolve));
    },
    ...overrides,
  });
  const endTurn = () => {
    for (const callback of endOfTurn.splice(0)) callback();
  };
  /** Settle the oldest flush in flight, then let its continuation (and the end of that turn) run. */
  const settleOldest = async () => {
    pending.shift()!();
    await clock.flushMicrotasks();
    endTurn();
  };
  const shape = () => flushes.map((flush) => [flush.reason, flush.batch] as const);
  return { batcher, flushes, endTurn, settleOldest, shape, inFlight: () => pending.length };
}

describe('Batcher flushPolicy natural', () => {
  it('sends a lone item at the end of its turn, without waiting for any time to pass', () => {
    const clock = createFakeClock();
    const { batcher, endTurn, shape } = naturalBatcher(clock);
    batcher.enqueue(1);
    assert.deepEqual(shape(), [], 'not within the turn: items arriving together go together');
    endTurn();
    assert.deepEqual(shape(), [['natural', [1]]]);
  });

  it('sends the items of one turn as one batch', () => {
    const clock = createFakeClock();
    const { batcher, endTurn, shape } = naturalBatcher(clock);
    for (const item of [1, 2, 3]) batcher.enqueue(item);
    endTurn();
    assert.deepEqual(shape(), [['natural', [1, 2, 3]]]);
  });

  it('while every slot is busy, the batch grows; it leaves as one when a slot frees', async () => {
    const clock = createFakeClock();
    const { batcher, endTurn, settleOldest, shape, inFlight } = naturalBatcher(clock);
    batcher.enqueue(1);
    endTurn();
    batcher.enqueue(2);
    endTurn();
    assert.equal(inFlight(), 2, 'a trickle takes both slots, one item each');
    for (const item of [3, 4, 5, 6, 7]) {
      batcher.enqueue(item);
      endTurn();
    }
    await clock.tickAsync(10_000);
    assert.deepEqual(shape(), [['natural', [1]], ['natural', [2]]], 'nothing leaves while both slots are busy, not even after 10 s');
    await settleOldest();
    assert.deepEqual(shape().at(-1), ['natural', [3, 4, 5, 6, 7]], 'what accumulated meanwhile is the next batch');
  });

  it('still seals at maxBatchSize while the slots are busy; sealed batches keep their FIFO order', async () => {
    const clock = createFakeClock();
    const { batcher, endTurn, settleOldest, shape } = naturalBatcher(clock, { maxBatchSize: 4, flushConcurrency: 1 });
    batcher.enqueue(0);
    endTurn();
    for (let item = 1; item <= 10; item += 1) batcher.enqueue(item);
    endTurn();
    assert.deepEqual(shape(), [['natural', [0]]]);
    await settleOldest();
    await settleOldest();
    await settleOldest();
    assert.deepEqual(shape(), [
      ['natural', [0]],
      ['size', [1, 2, 3, 4]],
      ['size', [5, 6, 7, 8]],
      ['natural', [9, 10]],
    ]);
  });

  it('with partitions, a free slot takes the oldest open batch first', async () => {
    const clock = createFakeClock();
    const { batcher, endTurn, settleOldest, shape } = naturalBatcher(clock, { flushConcurrency: 1, partitionOf: (n) => (n % 2 === 0 ? 'even' : 'odd') });
    batcher.enqueue(100);
    endTurn();
    for (const item of [1, 2, 3, 4]) batcher.enqueue(item);
    endTurn();
    await settleOldest();
    await settleOldest();
    assert.deepEqual(shape(), [
      ['natural', [100]],
      ['natural', [1, 3]],
      ['natural', [2, 4]],
    ]);
  });

  it('drains an open batch on shutdown', async () => {
    const clock = createFakeClock();
    const { batcher, endTurn, settleOldest, shape } = naturalBatcher(clock, { flushConcurrency: 1 });
    batcher.enqueue(1);
    endTurn();
    batcher.enqueue(2);
    const drained = batcher.shutdown(1000);
    await settleOldest();
    await settleOldest();
    await drained;
    assert.deepEqual(shape(), [['natural', [1]], ['shutdown', [2]]]);
  });
});

describe('Batcher.setWindow', () => {
  it('applies a new size from the next item and a new wait to the next batch opened', async () => {
    const clock = createFakeClock();
    const flushes: [FlushReason, number][] = [];
    const batcher = new Batcher<number>(
      batcherOptions(clock, (batch, { reason }) => {
        flushes.push([reason, batch.length]);
        return Promise.resolve();
      }),
    );
    for (const item of [1, 2, 3]) batcher.enqueue(item);
    batcher.setWindow({ maxBatchSize: 4, maxWaitMs: 50 });
    assert.deepEqual(batcher.window, { maxBatchSize: 4, maxWaitMs: 50 });
    batcher.enqueue(4);
    assert.deepEqual(flushes, [['size', 4]], 'the open batch is sealed at the new size');
    batcher.enqueue(5);
    await clock.tickAsync(49);
    assert.equal(flushes.length, 1);
    await clock.tickAsync(1);
    assert.deepEqual(flushes, [['size', 4], ['time', 1]], 'the next batch lingers for the new wait');
    assert.throws(() => batcher.setWindow({ maxBatchSize: 0, maxWaitMs: 1 }), RangeError);
  });
});
