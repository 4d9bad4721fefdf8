import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { IngestError } from '../../src/errors.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { acceptEvents } from '../../src/http/accept-events.ts';
import { Admission } from '../../src/http/admission.ts';
import { prepareEvent } from '../../src/http/prepare-event.ts';
import { IngestPipeline } from '../../src/ingest/pipeline.ts';
import type { Sink, WriteResult } from '../../src/sink/sink.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { WalDurability } from '../../src/wal/durability.ts';
import type { WalFailedError } from '../../src/wal/errors.ts';
import { recoverWal } from '../../src/wal/recover.ts';
import { segmentName } from '../../src/wal/segment-files.ts';
import { WriteAheadLog, type WalOptions } from '../../src/wal/write-ahead-log.ts';
import { sampleEvent } from '../helpers/service.ts';

/** A sink that holds every batch until released: accepted events stay unsettled in the log. */
class HeldSink implements Sink {
  #release: () => void = () => {};
  readonly #released = new Promise<void>((resolve) => (this.#release = resolve));
  async write(batch: readonly QueuedEvent[]): Promise<WriteResult> {
    await this.#released;
    return { inserted: batch.length, deadLettered: [] };
  }
  release(): void {
    this.#release();
  }
}

function events(count: number): QueuedEvent[] {
  return Array.from({ length: count }, () => {
    const prepared = prepareEvent(sampleEvent(), new Date().toISOString());
    assert.ok(prepared.ok);
    return prepared.event;
  });
}

async function refusal(promise: Promise<unknown>): Promise<IngestError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof IngestError, `an IngestError, not ${String(error)}`);
    return error;
  }
  assert.fail('the request was accepted');
}

describe('acceptEvents with the write-ahead log: a refused event is never in the log', () => {
  let root: string;
  let directory: string;
  let sink: HeldSink;
  let pipeline: IngestPipeline;
  let wal: WriteAheadLog;
  let context: Parameters<typeof acceptEvents>[0];
  const fatal: WalFailedError[] = [];

  async function setUp(environment: Record<string, string>, walOptions: Partial<WalOptions> = {}): Promise<void> {
    const config = loadConfig({ LOG_LEVEL: 'silent', BATCH_MAX_WAIT_MS: '1', BATCH_MAX_SIZE: '5', ...environment });
    sink = new HeldSink();
    wal = await WriteAheadLog.open(
      { directory, segmentMaxBytes: 1024 * 1024, maxBytes: 1024 * 1024, now: () => performance.now(), onFatal: (error) => fatal.push(error), ...walOptions },
      [],
      1,
    );
    const durability = new WalDurability(wal);
    pipeline = new IngestPipeline({
      batch: config.batch,
      queue: config.queue,
      sink,
      clock: systemClock,
      metrics: createMetrics(),
      logger: pino({ level: 'silent' }),
      onSettled: (batch) => durability.settle(batch),
    });
    const admission = new Admission(
      { queuedDepth: 0, capacity: config.queue.capacity, drainRatePerSecond: 0, draining: false, hasRoomFor: () => true },
      { highWater: 0.8, lowWater: 0.6 },
    );
    context = { pipeline, durability, admission };
  }

  async function loggedSeqs(): Promise<number[]> {
    return (await recoverWal(directory)).records.map((record) => record.seq);
  }

  beforeEach(async () => {
    root = directory = await mkdtemp(path.join(tmpdir(), 'ingest-accept-'));
    fatal.length = 0;
  });
  afterEach(async () => {
    sink.release();
    await pipeline.shutdown(5_000);
    await wal.close().catch(() => {});
    await rm(root, { recursive: true, force: true });
  });

  it('a bulk the log has no room for is refused whole (503 INGEST_ERR_WAL_FULL): none of its records is written', async () => {
    const first = events(20);
    await setUp({ QUEUE_CAPACITY: '1000' }, { maxBytes: first.reduce((sum, event) => sum + event.bytes + 16, 0) + 2000 });
    await acceptEvents(context, first);
    const refused = await refusal(acceptEvents(context, events(20)));
    assert.equal(refused.code, 'INGEST_ERR_WAL_FULL');
    assert.equal(refused.status, 503);
    assert.ok(refused.retryAfterSeconds !== undefined && refused.retryAfterSeconds > 0);
    assert.equal((await loggedSeqs()).length, 20, 'only the accepted bulk is in the log');
    await acceptEvents(context, events(1)); // a request that fits is still taken
    assert.equal((await loggedSeqs()).length, 21);
  });

  it('a bulk the queue has no room for is refused (503 INGEST_ERR_QUEUE_FULL) before anything is written', async () => {
    await setUp({ QUEUE_CAPACITY: '10', FLUSH_CONCURRENCY: '1' });
    await acceptEvents(context, events(5)); // one batch, held in the only flush slot: out of the queue
    await acceptEvents(context, events(8)); // queued
    const refused = await refusal(acceptEvents(context, events(5)));
    assert.equal(refused.code, 'INGEST_ERR_QUEUE_FULL');
    assert.equal((await loggedSeqs()).length, 13);
  });

  it('room is reserved while a request waits for its fsync: concurrent requests cannot overfill the queue after writing', async () => {
    await setUp({ QUEUE_CAPACITY: '10' });
    const outcomes = await Promise.allSettled([acceptEvents(context, events(6)), acceptEvents(context, events(6))]);
    assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected']);
    const refused = (outcomes[1] as PromiseRejectedResult).reason as IngestError;
    assert.equal(refused.code, 'INGEST_ERR_QUEUE_FULL');
    assert.equal((await loggedSeqs()).length, 6, 'the refused request was never written');
  });

  it('a request arriving while draining is refused (503 INGEST_ERR_DRAINING) before anything is written', async () => {
    await setUp({});
    pipeline.beginDrain();
    const refused = await refusal(acceptEvents(context, events(3)));
    assert.equal(refused.code, 'INGEST_ERR_DRAINING');
    assert.deepEqual(await loggedSeqs(), []);
  });

  it('a drain that begins while the request waits for its fsync still takes the request (the drain waits for in-flight requests)', async () => {
    await setUp({});
    const accepting = acceptEvents(context, events(3));
    pipeline.beginDrain();
    await accepting;
    assert.equal(pipeline.depth, 3);
  });

  it('the queue closing while the request waits for its fsync: refused, and a cancellation keeps its records from replay', async () => {
    await setUp({});
    await acceptEvents(context, events(2));
    const accepting = acceptEvents(context, events(3));
    const drained = pipeline.shutdown(60_000);
    const refused = await refusal(accepting);
    assert.equal(refused.code, 'INGEST_ERR_DRAINING');
    // A crash now: only the two accepted events come back.
    assert.deepEqual(await loggedSeqs(), [1, 2]);
    sink.release();
    await drained;
  });

  it('a full disk answers 503 INGEST_ERR_WAL_FULL, releases the records that were never written, and takes requests again once there is space', async (t) => {
    const mountPoint = path.join(directory, 'small');
    await mkdir(mountPoint);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountPoint], { stdio: 'ignore' });
    } catch {
      t.skip('cannot mount a small tmpfs here (needs root and mount permission)');
      await setUp({});
      return;
    }
    try {
      const filler = path.join(mountPoint, 'filler');
      await writeFile(filler, Buffer.alloc(48 * 1024));
      let nowMs = 0;
      directory = path.join(mountPoint, 'wal');
      await mkdir(directory);
      await setUp({ QUEUE_CAPACITY: '1000' }, { now: () => nowMs, diskFullRetryMs: 1000 });
      let refused: IngestError | undefined;
      let acknowledged = 0;
      for (let i = 0; i < 200 && !refused; i += 1) {
        try {
          await acceptEvents(context, events(5));
          acknowledged += 5;
        } catch (error) {
          refused = error as IngestError;
        }
      }
      assert.equal(refused?.code, 'INGEST_ERR_WAL_FULL');
      assert.match(refused.message, /disk is full/);
      assert.equal(fatal.length, 0);
      assert.equal((await loggedSeqs()).length, acknowledged, 'the refused request left nothing in the log');
      await rm(filler);
      nowMs += 1000;
      await acceptEvents(context, events(5));
      assert.equal((await loggedSeqs()).length, acknowledged + 5);
      sink.release();
      await pipeline.shutdown(5_000);
      await wal.close();
    } finally {
      execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
    }
  });

  it('a failed fsync answers 503 INGEST_ERR_WAL_FAILED and reports the fatal error', async () => {
    // A segment that is really /dev/null: writes succeed, fdatasync fails (EINVAL), as a failing disk would.
    await symlink('/dev/null', path.join(directory, segmentName(1)));
    await setUp({});
    const refused = await refusal(acceptEvents(context, events(2)));
    assert.equal(refused.code, 'INGEST_ERR_WAL_FAILED');
    assert.equal(refused.status, 503);
    assert.equal(fatal.length, 1);
    const again = await refusal(acceptEvents(context, events(1)));
    assert.equal(again.code, 'INGEST_ERR_WAL_FAILED', 'nothing more is acknowledged');
  });
});
