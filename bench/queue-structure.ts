/**
 * `npm run bench:queue`
 *
 * Queue structure (seed task 22): how many items per second go through enqueue.
 *  (1) the service's Batcher itself (packages/batcher/src/batcher.ts), 500-item batches, a flush that
 *      resolves at once: enqueue alone, and enqueue + flush + settle until idle;
 *  (2) the batcher's buffer layout in isolation — a fresh array per batch, grown by push (what
 *      the Batcher does: items, enqueue times and waiters) — against a preallocated ring buffer of
 *      the queue's capacity, with a batch handed out as a copy (a sink may keep its array) or as
 *      a (start, length) view.
 * Target of the seed task: 1M items/s through enqueue.
 */
import { Batcher } from '@audit-ingest/batcher';
import { systemClock } from '../src/clock.ts';
import { runMicro, throughput } from './lib/micro.ts';
import { fmt } from './lib/scenario.ts';

const BATCH = 500;
const CAPACITY = 2048;
const ITEMS_PER_CALL = 100_000;

interface Item {
  readonly n: number;
}
const items: Item[] = Array.from({ length: ITEMS_PER_CALL }, (_, n) => ({ n }));
let sink = 0;
const noopWaiter = () => {};

/** The Batcher's layout: three arrays per batch, grown by push; a sealed batch is handed out as is. */
function arrayBuffer(): void {
  let open = { items: [] as Item[], at: [] as number[], waiters: [] as (() => void)[] };
  const now = Date.now();
  for (let i = 0; i < ITEMS_PER_CALL; i++) {
    open.items.push(items[i]!);
    open.at.push(now);
    open.waiters.push(noopWaiter);
    if (open.items.length >= BATCH) {
      sink += open.items.length; // handed to the flush
      open = { items: [], at: [], waiters: [] };
    }
  }
}

/** A preallocated ring of CAPACITY slots; at BATCH items the batch leaves as a copy or a view. */
function ringBuffer(copy: boolean): () => void {
  const slots: (Item | undefined)[] = new Array<Item | undefined>(CAPACITY).fill(undefined);
  const at = new Float64Array(CAPACITY);
  const waiters: ((() => void) | undefined)[] = new Array<(() => void) | undefined>(CAPACITY).fill(undefined);
  const mask = CAPACITY - 1;
  let head = 0;
  let tail = 0;
  return () => {
    const now = Date.now();
    for (let i = 0; i < ITEMS_PER_CALL; i++) {
      slots[tail & mask] = items[i]!;
      at[tail & mask] = now;
      waiters[tail & mask] = noopWaiter;
      tail++;
      if (tail - head >= BATCH) {
        if (copy) {
          const batch: Item[] = new Array<Item>(BATCH);
          for (let k = 0; k < BATCH; k++) {
            batch[k] = slots[(head + k) & mask]!;
            slots[(head + k) & mask] = undefined;
          }
          sink += batch.length;
        } else {
          sink += tail - head; // a (head, length) view; the slots are freed when the flush settles
        }
        head = tail;
      }
    }
  };
}

function batcher(): Batcher<Item> {
  return new Batcher<Item>({
    maxBatchSize: BATCH,
    maxBatchBytes: 1 << 30,
    maxWaitMs: 200,
    capacity: 10_000_000,
    capacityBytes: 1 << 30,
    flushConcurrency: 2,
    clock: systemClock,
    sizeOf: () => 1,
    flush: () => Promise.resolve(),
  });
}

async function batcherThroughput(rounds: number): Promise<{ enqueueOnly: number; withSettle: number }> {
  let bestEnqueue = 0;
  let bestTotal = 0;
  for (let round = 0; round < rounds + 1; round++) {
    const b = batcher();
    const started = performance.now();
    for (let i = 0; i < ITEMS_PER_CALL * 10; i++) b.enqueue(items[i % ITEMS_PER_CALL]!, noopWaiter);
    const enqueued = performance.now();
    await b.shutdown(10_000);
    const settled = performance.now();
    if (round === 0) continue; // warm-up
    bestEnqueue = Math.max(bestEnqueue, (ITEMS_PER_CALL * 10 * 1000) / (enqueued - started));
    bestTotal = Math.max(bestTotal, (ITEMS_PER_CALL * 10 * 1000) / (settled - started));
  }
  return { enqueueOnly: bestEnqueue, withSettle: bestTotal };
}

await runMicro('queue', `${fmt(ITEMS_PER_CALL)} items per call, ${BATCH}-item batches, capacity ${CAPACITY}; best of 5 rounds of ≥ 300 ms after a warm-up`, async () => {
  const real = await batcherThroughput(5);
  const array = throughput(arrayBuffer, ITEMS_PER_CALL);
  const ringCopy = throughput(ringBuffer(true), ITEMS_PER_CALL);
  const ringView = throughput(ringBuffer(false), ITEMS_PER_CALL);
  const lines = [
    '## Queue structure: items per second through enqueue',
    '',
    '| what | items/s (best) | items/s (median) |',
    '| --- | ---: | ---: |',
    `| Batcher.enqueue (packages/batcher), 1M items, flush resolves at once: enqueue loop only | ${fmt(real.enqueueOnly)} | — |`,
    `| Batcher: enqueue + flush + settle until idle (shutdown) | ${fmt(real.withSettle)} | — |`,
    `| buffer alone: array per batch, push (the Batcher's layout) | ${fmt(array.best)} | ${fmt(array.median)} |`,
    `| buffer alone: preallocated ring, batch copied out | ${fmt(ringCopy.best)} | ${fmt(ringCopy.median)} |`,
    `| buffer alone: preallocated ring, batch as a view | ${fmt(ringView.best)} | ${fmt(ringView.median)} |`,
    '',
    '### Method',
    '',
    `- Batcher: new Batcher per round (maxBatchSize ${BATCH}, capacity 10,000,000 so nothing is refused, flushConcurrency 2, systemClock), ${fmt(ITEMS_PER_CALL * 10)} enqueue calls with a waiter each, then shutdown() waits until every batch settled; best of 5 rounds after one warm-up round.`,
    '- Buffer alone: the same items, enqueue time and waiter stored per item; a batch leaves at 500 items. Copy: a fresh 500-slot array filled from the ring (a sink may keep the array it is given, so a ring must copy or pin its slots until the flush settles); view: no copy (slots pinned until settled, not modelled further).',
    `- (checksum ${sink % 7})`,
  ];
  return { markdown: lines.join('\n'), json: { real, array, ringCopy, ringView } };
});
