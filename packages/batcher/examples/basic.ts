/**
 * A batcher writing lines to a "sink" (here, stdout) in batches of at most 100 items or 50 ms,
 * two writes at a time, then a shutdown that drains within a deadline.
 *
 *   npm run example -w @audit-ingest/batcher
 */
import { Batcher, BatcherDrainTimeoutError, systemClock, type ItemOutcome } from '@audit-ingest/batcher';

interface Line {
  readonly tenant: string;
  readonly text: string;
}

const batcher = new Batcher<Line>({
  maxBatchSize: 100,
  maxBatchBytes: 64 * 1024,
  maxWaitMs: 50,
  capacity: 1000, // enqueue() answers { ok: false, reason: 'full' } past it: the caller sheds or waits
  capacityBytes: 1024 * 1024,
  flushConcurrency: 2,
  clock: systemClock,
  sizeOf: (line) => Buffer.byteLength(line.text),
  partitionOf: (line) => line.tenant, // a batch never mixes tenants
  flush: (batch, { reason }) => {
    // The only place that knows about storage. Throwing fails the batch ('failed' for each item);
    // { rejected: [indexes] } refuses single items for good.
    const rejected = batch.flatMap((line, index) => (line.text.length === 0 ? [index] : []));
    process.stdout.write(`${batch[0]?.tenant}: ${batch.length} lines (${reason}), ${rejected.length} refused\n`);
    return Promise.resolve({ rejected });
  },
  onFlushSettled: (report) => {
    if (report.error) process.stderr.write(`batch of ${report.size} failed: ${report.error instanceof Error ? report.error.message : 'unknown error'}\n`);
  },
});

const outcomes = new Map<ItemOutcome, number>();
const settled: Promise<void>[] = [];
for (let i = 0; i < 450; i += 1) {
  const line = { tenant: i % 3 === 0 ? 'acme' : 'globex', text: i === 7 ? '' : `line ${i}` };
  settled.push(
    new Promise<void>((resolve) => {
      const result = batcher.enqueue(line, (outcome) => {
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        resolve();
      });
      if (!result.ok) {
        process.stderr.write(`not taken: ${result.reason}\n`);
        resolve();
      }
    }),
  );
}

try {
  await batcher.shutdown(5_000); // seals the open batches and waits for every flush, or the deadline
} catch (error) {
  if (error instanceof BatcherDrainTimeoutError) process.stderr.write(`${error.remaining.length} items left unwritten\n`);
  else throw error;
}
await Promise.all(settled);
process.stdout.write(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}\n`);
