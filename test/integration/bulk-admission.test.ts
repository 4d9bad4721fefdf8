import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { scanSegment } from '../../src/wal/record-format.ts';
import { SEGMENT_SUFFIX } from '../../src/wal/segment-files.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

const ndjson = (count: number, tenant: string) => `${Array.from({ length: count }, () => JSON.stringify(sampleEvent({ tenant }))).join('\n')}\n`;

async function postBulk(service: TestService, count: number, tenant: string) {
  const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: ndjson(count, tenant) });
  return { status: response.statusCode, code: response.statusCode >= 400 ? response.json<{ code: string }>().code : undefined, retryAfter: response.headers['retry-after'] };
}

async function postOne(service: TestService, tenant: string) {
  const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant }) });
  return { status: response.statusCode, code: response.statusCode >= 400 ? response.json<{ code: string }>().code : undefined };
}

/** Bytes of the records in the write-ahead log's segments on disk (segments are zero-filled ahead, so not their file sizes). */
async function bytesOnDisk(directory: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(directory, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(SEGMENT_SUFFIX)) total += scanSegment(await readFile(path.join(entry.parentPath, entry.name))).validBytes;
  }
  return total;
}

describe('bulk admission (ADMISSION_POLICY=standing)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('never refuses a bulk client the database keeps up with: 20 back-to-back 1000-event requests into a 2048-event queue, all 202, all stored', async () => {
    // The default queue and batches. Each request needs half the queue and arrives before the
    // previous one's batches commit: it waits for room (a generous wait here, so a machine
    // busy with other tests does not turn a slow commit into a refusal) instead of a 429.
    const service = await buildTestService(db.url, { QUEUE_CAPACITY: '2048', ADMISSION_WAIT_MS: '10000' });
    try {
      const answers: number[] = [];
      for (let i = 0; i < 20; i += 1) answers.push((await postBulk(service, 1000, 'steady-bulk')).status);
      assert.deepEqual(answers, Array<number>(20).fill(202));
      await waitFor(async () => (await db.count("tenant = 'steady-bulk'")) === 20_000, 30_000, 'all 20,000 events stored');
    } finally {
      await service.close();
    }
  });

  it('a bulk that does not fit waits for room instead of being refused, and is taken once a batch commits', async () => {
    const service = await buildTestService(db.url, { QUEUE_CAPACITY: '100', BATCH_MAX_SIZE: '10', ADMISSION_WAIT_MS: '30000' });
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
      assert.equal((await postBulk(service, 60, 'waits')).status, 202);
      // Two batches of 10 are being written (held by the lock), 40 are queued: 40 + 50 would pass
      // the high-water mark of 80.
      const waiting = postBulk(service, 50, 'waits');
      await waitFor(() => service.pipeline.waiters.size === 1, 10_000, 'the bulk to wait for room');
      assert.equal(service.pipeline.depth, 60, 'nothing of the waiting request is queued yet');
      assert.equal(service.pipeline.queuedDepth, 40);
      await locker.query('ROLLBACK');
      assert.equal((await waiting).status, 202);
      await waitFor(async () => (await db.count("tenant = 'waits'")) === 110, 10_000, 'all 110 stored');
    } finally {
      locker.release();
      await service.close();
    }
  });

  it('a refusal never follows a write-ahead-log write; a stalled database sheds above 80 % and takes events again once drained below 60 %, every 202 stored', async () => {
    const dataDir = path.join(tmpdir(), `ingest-test-${randomUUID()}`);
    const service = await buildTestService(db.url, { QUEUE_CAPACITY: '100', BATCH_MAX_SIZE: '10', ADMISSION_WAIT_MS: '100' }, { dataDir });
    const locker = await db.pool.connect();
    let accepted = 0;
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
      for (const count of [30, 30]) {
        assert.equal((await postBulk(service, count, 'stalled')).status, 202);
        accepted += count;
      }
      const walBytes = () => bytesOnDisk(dataDir);
      // Two batches of 10 are being written (stuck on the lock): out of the queue, which holds 40.
      assert.equal(service.pipeline.depth, 60);
      assert.equal(service.pipeline.queuedDepth, 40, 'batches in flight are not in the queue');

      // 40 + 50 > 80: the bulk waits, nothing drains, the wait runs out: 429, and nothing of it
      // was written. The queue is not above the mark, so shedding does not begin for others.
      let before = await walBytes();
      const tooBig = await postBulk(service, 50, 'stalled');
      assert.equal(tooBig.status, 429);
      assert.equal(tooBig.code, 'INGEST_ERR_OVERLOADED');
      assert.match(String(tooBig.retryAfter), /^[1-9][0-9]*$/);
      assert.equal(await walBytes(), before, 'the refused bulk wrote nothing to the log');

      assert.equal((await postBulk(service, 40, 'stalled')).status, 202, '80 fits: not above the high-water mark');
      accepted += 40;
      assert.ok((await walBytes()) > before, 'an acknowledged bulk is in the log (the measure sees writes)');

      // At the mark: a single event waits, the queue stands above it for the whole wait, so
      // shedding begins; from then on refusals are immediate. None of them wrote to the log.
      before = await walBytes();
      assert.deepEqual(await postOne(service, 'stalled'), { status: 429, code: 'INGEST_ERR_OVERLOADED' });
      assert.equal(service.admission.shedding, true);
      for (let i = 0; i < 5; i += 1) assert.deepEqual(await postOne(service, 'stalled'), { status: 429, code: 'INGEST_ERR_OVERLOADED' });
      assert.equal(await walBytes(), before, 'no refused request wrote to the log');
      assert.equal(service.pipeline.depth, accepted, 'queue and flush slots hold exactly the acknowledged events');
      assert.equal(service.pipeline.queuedDepth, accepted - 20);

      await locker.query('ROLLBACK');
      await waitFor(() => service.pipeline.queuedDepth < 60, 10_000, 'the queue to drain below the low-water mark');
      const again = await postOne(service, 'stalled');
      assert.equal(again.status, 202, 'accepting again below 60 %');
      accepted += 1;
      assert.equal(service.admission.shedding, false);
      await waitFor(async () => (await db.count("tenant = 'stalled'")) === accepted, 10_000, 'every acknowledged event stored');
      assert.equal(service.pipeline.counters().accepted, accepted, 'accepted = 202s');
    } finally {
      locker.release();
      await service.close();
    }
  });

  it('one tenant flooding with 16 concurrent bulks is the only tenant: never refused for its share', async () => {
    const service = await buildTestService(db.url, { QUEUE_CAPACITY: '2048', ADMISSION_WAIT_MS: '20000' });
    try {
      const answers = await Promise.all(Array.from({ length: 16 }, () => postBulk(service, 500, 'flood')));
      assert.deepEqual(answers.map((a) => a.status), Array<number>(16).fill(202));
      await waitFor(async () => (await db.count("tenant = 'flood'")) === 8000, 30_000, 'all 8,000 stored');
    } finally {
      await service.close();
    }
  });
});
