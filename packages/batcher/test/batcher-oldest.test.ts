/**
 * Batcher.oldestEnqueuedAtMs: the enqueue time of the oldest unsettled item, wherever it is
 * (open batch, sealed and waiting for a slot, in flight and being retried). It feeds
 * ingest_oldest_unsettled_event_age_seconds, which is what an outage really shows.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type FlushResult } from '../src/batcher.ts';
import { createFakeClock } from './fake-clock.ts';

function setup(partitioned = false) {
  const clock = createFakeClock();
  const pending: ((result?: FlushResult) => void)[] = [];
  const batcher = new Batcher<{ partition: string }>({
    maxBatchSize: 2,
    maxBatchBytes: 1_000_000,
    maxWaitMs: 200,
    capacity: 100,
    capacityBytes: 1_000_000,
    flushConcurrency: 1,
    clock,
    sizeOf: () => 1,
    flush: () => new Promise<FlushResult | void>((resolve) => pending.push(resolve)),
    ...(partitioned ? { partitionOf: (item: { partition: string }) => item.partition } : {}),
  });
  const settleNext = async () => {
    pending.shift()!();
    await clock.flushMicrotasks();
  };
  return { clock, batcher, settleNext, pending };
}

describe('Batcher.oldestEnqueuedAtMs', () => {
  it('is undefined while nothing is unsettled', () => {
    const { batcher } = setup();
    assert.equal(batcher.oldestEnqueuedAtMs, undefined);
  });

  it('follows the oldest item through open, sealed and in-flight batches, and clears once all settle', async () => {
    const { clock, batcher, settleNext } = setup();
    const t0 = clock.now();
    batcher.enqueue({ partition: '' }); // open batch
    assert.equal(batcher.oldestEnqueuedAtMs, t0);
    await clock.tickAsync(50);
    batcher.enqueue({ partition: '' }); // size 2: sealed, in flight (the only slot)
    await clock.tickAsync(50);
    batcher.enqueue({ partition: '' });
    batcher.enqueue({ partition: '' }); // sealed, waiting for the slot
    await clock.tickAsync(50);
    batcher.enqueue({ partition: '' }); // open again
    assert.equal(batcher.oldestEnqueuedAtMs, t0, 'the in-flight batch holds the oldest item');
    await clock.tickAsync(60_000); // a write that hangs for a minute: the age keeps growing
    assert.equal(batcher.oldestEnqueuedAtMs, t0);
    await settleNext();
    assert.equal(batcher.oldestEnqueuedAtMs, t0 + 100, 'next: the sealed batch');
    await settleNext();
    assert.equal(batcher.oldestEnqueuedAtMs, t0 + 150, 'next: the open batch, sealed by its timer meanwhile');
    await settleNext();
    assert.equal(batcher.oldestEnqueuedAtMs, undefined);
  });

  it('with partitions, finds the oldest item even when a younger batch was sealed first', async () => {
    const { clock, batcher } = setup(true);
    const t0 = clock.now();
    batcher.enqueue({ partition: 'a' }); // a's open batch, t0
    await clock.tickAsync(10);
    batcher.enqueue({ partition: 'b' });
    batcher.enqueue({ partition: 'b' }); // b sealed (size) and in flight
    await clock.tickAsync(10);
    batcher.enqueue({ partition: 'c' });
    batcher.enqueue({ partition: 'c' }); // c sealed, waiting
    assert.equal(batcher.oldestEnqueuedAtMs, t0, "a's open batch is older than every sealed one");
  });
});
