import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { WalFailedError, WalFullError } from '../../src/wal/errors.ts';
import { recoverWal } from '../../src/wal/recover.ts';
import { segmentName } from '../../src/wal/segment-files.ts';
import { SPARE_SEGMENT_NAME } from '../../src/wal/segment-preallocator.ts';
import { WriteAheadLog, type WalOptions } from '../../src/wal/write-ahead-log.ts';
import { waitFor } from '../helpers/service.ts';

const payload = (i: number) => Buffer.from(`${String(i).padStart(8, '0')}\tacme\t${'x'.repeat(100)}\n`);

/** Append payload(0), payload(1), ... (each made durable) until an append is refused, at most 100. */
async function appendUntilRefused(wal: WriteAheadLog): Promise<{ seqs: number[]; refused: unknown }> {
  const seqs: number[] = [];
  let refused: unknown;
  for (let i = 0; i < 100 && refused === undefined; i += 1) {
    try {
      const { seq, durable } = wal.append(payload(i));
      seqs.push(seq);
      await durable;
    } catch (error) {
      refused = error;
    }
  }
  return { seqs, refused };
}
const segmentFiles = async (directory: string) => (await readdir(directory)).filter((n) => n.endsWith('.wal')).sort();

function options(directory: string, overrides: Partial<WalOptions> = {}) {
  const groups: number[] = [];
  const fatal: WalFailedError[] = [];
  return {
    groups,
    fatal,
    options: {
      directory,
      segmentMaxBytes: 4096,
      maxBytes: 1024 * 1024,
      now: () => performance.now(),
      onGroupCommit: (_ms: number, records: number) => groups.push(records),
      onFatal: (error: WalFailedError) => fatal.push(error),
      ...overrides,
    } satisfies WalOptions,
  };
}

describe('WriteAheadLog', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'ingest-wal-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('group-commits concurrent appends: one fsync covers many records, and each resolves only after it', async () => {
    const { groups, options: walOptions } = options(directory, { segmentMaxBytes: 1024 * 1024 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const appended = Array.from({ length: 200 }, (_, i) => wal.append(payload(i)));
    assert.equal(groups.length, 0, 'nothing is durable synchronously');
    await Promise.all(appended.map((a) => a.durable));
    assert.deepEqual(appended.map((a) => a.seq), Array.from({ length: 200 }, (_, i) => i + 1));
    assert.equal(groups.reduce((sum, n) => sum + n, 0), 200);
    assert.ok(groups.length < 20, `${groups.length} fsyncs for 200 records`);
    await wal.close();
    const recovery = await recoverWal(directory);
    assert.equal(recovery.records.length, 200);
  });

  it('writes into zero-filled segments (each segment file is its full size from the start, the next one kept ready) and recovers exactly the records, neither torn nor quarantined', async () => {
    const segmentMaxBytes = 64 * 1024;
    const { fatal, options: walOptions } = options(directory, { segmentMaxBytes });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const appended = [];
    for (let i = 0; i < 1500; i += 1) {
      appended.push(wal.append(payload(i)));
      // Groups of 50 (~6 KB), so segments roll at their size.
      if (i % 50 === 49) await appended.at(-1)!.durable;
    }
    await Promise.all(appended.map((a) => a.durable));
    await waitFor(async () => (await readdir(directory)).includes(SPARE_SEGMENT_NAME), 5000, 'the spare segment to be made');
    const files = await segmentFiles(directory);
    assert.ok(files.length >= 3, `${files.length} segments for ~190 KB of records`);
    for (const name of files) assert.equal((await stat(path.join(directory, name))).size, segmentMaxBytes, `${name} is preallocated`);
    assert.equal((await stat(path.join(directory, SPARE_SEGMENT_NAME))).size, segmentMaxBytes);
    // A crash now: nothing is settled, every segment ends in zeros.
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((r) => r.seq), appended.map((a) => a.seq));
    assert.equal(recovery.tornTails, 0);
    assert.deepEqual(recovery.quarantined, []);
    assert.equal(fatal.length, 0);
    wal.settle(appended.map((a) => a.seq));
    await wal.close();
    assert.deepEqual(await readdir(directory), [], 'a settled log leaves no segment and no spare');
  });

  it('a half-filled spare left by a crash is neither replayed nor used as it is: it is filled again', async () => {
    await writeFile(path.join(directory, SPARE_SEGMENT_NAME), Buffer.alloc(1000, 0x41));
    assert.deepEqual((await recoverWal(directory)).records, []);
    const { options: walOptions } = options(directory, { segmentMaxBytes: 8192 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const { seq, durable } = wal.append(payload(1));
    await durable;
    await wal.close();
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((r) => r.seq), [seq]);
    assert.deepEqual(recovery.quarantined, []);
  });

  it('overlaps groups (appends while an fsync runs get written and synced at once) and keeps every record, in order, across rolls', async () => {
    const { groups, fatal, options: walOptions } = options(directory);
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const acknowledged: number[] = [];
    const waves: Promise<void>[] = [];
    // Each wave is appended in its own turn of the event loop, while earlier waves' fsyncs run.
    for (let wave = 0; wave < 40; wave += 1) {
      for (let i = 0; i < 5; i += 1) {
        const { seq, durable } = wal.append(payload(wave * 5 + i));
        waves.push(durable.then(() => void acknowledged.push(seq)));
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    await Promise.all(waves);
    assert.deepEqual(fatal, []);
    assert.deepEqual(acknowledged, Array.from({ length: 200 }, (_, i) => i + 1), 'acknowledged in append order');
    assert.equal(groups.reduce((sum, n) => sum + n, 0), 200, 'every record was covered by exactly one completed fsync');
    assert.ok((await segmentFiles(directory)).length > 1, 'the 4 KiB segments rolled');
    await wal.close();
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((record) => record.seq), Array.from({ length: 200 }, (_, i) => i + 1));
  });

  it('rolls segments by size and removes each once all its records are settled', async () => {
    const { options: walOptions } = options(directory);
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const seqs: number[] = [];
    for (let i = 0; i < 100; i += 1) {
      const { seq, durable } = wal.append(payload(i));
      seqs.push(seq);
      await durable; // one record per group: segments fill up predictably
    }
    const before = (await readdir(directory)).filter((n) => n.endsWith('.wal')).length;
    assert.ok(before > 2, `${before} segments`);
    wal.settle(seqs.filter((seq) => seq % 2 === 0));
    await wal.idle();
    assert.equal((await readdir(directory)).filter((n) => n.endsWith('.wal')).length, before, 'half-settled segments stay');
    wal.settle(seqs.filter((seq) => seq % 2 === 1));
    await wal.idle();
    assert.equal((await readdir(directory)).filter((n) => n.endsWith('.wal')).length, 1, 'only the current segment is left');
    await wal.close();
  });

  it('refuses appends past WAL_MAX_BYTES until settled segments are removed', async () => {
    const { options: walOptions } = options(directory, { maxBytes: 2048, segmentMaxBytes: 1024 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const { seqs, refused } = await appendUntilRefused(wal);
    assert.ok(refused instanceof WalFullError, 'refused once full');
    assert.match(refused.message, /WAL_MAX_BYTES/);
    assert.ok(wal.bytes <= 2048, `the log never goes past WAL_MAX_BYTES (${wal.bytes} bytes)`);
    wal.settle(seqs);
    await wal.idle();
    assert.equal(wal.refusing, undefined);
    await wal.append(payload(999)).durable;
    await wal.close();
  });

  it('with WAL_MAX_BYTES below the segment size, a full log rolls and deletes its settled current segment, then accepts again', async () => {
    const { options: walOptions } = options(directory, { maxBytes: 2048, segmentMaxBytes: 64 * 1024 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const { seqs, refused } = await appendUntilRefused(wal);
    assert.ok(refused instanceof WalFullError, 'refused once full');
    assert.equal((await segmentFiles(directory)).length, 1, 'everything is in the one current segment');
    wal.settle(seqs);
    await waitFor(() => wal.bytes === 0, 5_000, 'the settled current segment to be rolled and deleted');
    assert.equal(wal.refusing, undefined);
    const again = wal.append(payload(1000));
    await again.durable;
    assert.deepEqual(await segmentFiles(directory), [segmentName(again.seq)], 'only the new current segment is left');
    await wal.close();
  });

  it('a request too big for the room left is refused whole, and rolls a settled current segment so its retry fits', async () => {
    const { options: walOptions } = options(directory, { maxBytes: 2048, segmentMaxBytes: 64 * 1024 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const first = wal.appendAll([payload(1), payload(2), payload(3), payload(4), payload(5), payload(6), payload(7), payload(8), payload(9), payload(10)]);
    await Promise.all(first.map((a) => a.durable));
    const big = Array.from({ length: 10 }, (_, i) => payload(100 + i));
    assert.throws(() => wal.appendAll(big), WalFullError, 'no room for the whole request: none of it is written');
    wal.settle(first.map((a) => a.seq));
    assert.throws(() => wal.appendAll(big), WalFullError, 'the settled current segment still holds the bytes');
    await waitFor(() => wal.bytes === 0, 5_000, 'the refusal to roll the settled segment away');
    const retried = wal.appendAll(big);
    await Promise.all(retried.map((a) => a.durable));
    await wal.close();
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((r) => r.seq), retried.map((a) => a.seq), 'only the accepted request is in the log');
  });

  it('a cancelled record is never replayed, and its segment outlives the cancellation only as long as needed', async () => {
    const { options: walOptions } = options(directory, { segmentMaxBytes: 1024 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
    const kept = wal.appendAll([payload(1), payload(2)]);
    const refused = wal.appendAll([payload(3), payload(4), payload(5)]);
    await Promise.all([...kept, ...refused].map((a) => a.durable));
    // Fill the first segment so the cancellation lands in a later one.
    const filler: number[] = [];
    while ((await segmentFiles(directory)).length < 2) {
      const { seq, durable } = wal.append(payload(filler.length + 10));
      filler.push(seq);
      await durable;
    }
    await wal.cancel(refused.map((a) => a.seq));
    // ... and more, so the segment holding the cancellation is no longer the current one.
    while ((await segmentFiles(directory)).length < 3) {
      const { seq, durable } = wal.append(payload(filler.length + 10));
      filler.push(seq);
      await durable;
    }
    // Everything after the first segment settles; the cancellation's segment must stay while the
    // first segment (with the cancelled records and two live ones) is still there.
    wal.settle(filler);
    await wal.idle();
    // A crash now (no close): the refused records must not come back.
    const recovery = await recoverWal(directory);
    const replayed = recovery.records.map((r) => r.seq);
    for (const { seq } of refused) assert.ok(!replayed.includes(seq), `cancelled record ${seq} is not replayed`);
    for (const { seq } of kept) assert.ok(replayed.includes(seq), `live record ${seq} is replayed`);
    wal.settle(kept.map((a) => a.seq));
    await wal.idle();
    assert.equal((await segmentFiles(directory)).length, 1, 'once all is settled only the current segment is left');
    await wal.close();
  });

  it('a segment that cannot be removed stays counted, rejects nothing, and is removed at a later settle', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const failures: string[] = [];
      const { options: walOptions } = options(directory, { segmentMaxBytes: 1024, onHousekeepingFailed: (_error: unknown, file: string) => failures.push(file) });
      const wal = await WriteAheadLog.open(walOptions, [], 1);
      const seqs: number[] = [];
      while ((await segmentFiles(directory)).length < 2) {
        const { seq, durable } = wal.append(payload(seqs.length));
        seqs.push(seq);
        await durable;
      }
      const [oldest, current] = await segmentFiles(directory);
      const firstOfCurrent = Number(current!.slice(0, -'.wal'.length));
      // The oldest segment's file becomes a non-empty directory: rm (not recursive) fails, even as root.
      const blocked = path.join(directory, oldest!);
      await rm(blocked);
      await mkdir(blocked);
      await writeFile(path.join(blocked, 'in-the-way'), 'x');
      const bytesBefore = wal.bytes;
      wal.settle(seqs.filter((seq) => seq < firstOfCurrent));
      await waitFor(() => failures.length > 0 || unhandled.length > 0, 5_000, 'the removal to fail');
      await wal.idle();
      assert.deepEqual(unhandled, [], 'no unhandled rejection');
      assert.deepEqual(failures, [blocked]);
      assert.equal(wal.bytes, bytesBefore, 'the segment still counts until it is removed');
      await rm(blocked, { recursive: true });
      wal.settle(seqs.filter((seq) => seq >= firstOfCurrent).slice(0, 1));
      await waitFor(() => wal.bytes < bytesBefore, 5_000, 'the removal to be retried');
      assert.equal(wal.segments, 1);
      await wal.close();
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('an unwritable directory fails at open, loudly', async () => {
    const file = path.join(directory, 'not-a-directory');
    await writeFile(file, 'x');
    const { options: walOptions } = options(path.join(file, 'wal'));
    await assert.rejects(WriteAheadLog.open(walOptions, [], 1), /ENOTDIR|ENOENT/);
  });

  it('on a full disk, refuses without acknowledging, cuts the partial write off, and resumes when space returns', async (t) => {
    const mountPoint = path.join(directory, 'small');
    await mkdir(mountPoint);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountPoint], { stdio: 'ignore' });
    } catch {
      t.skip('cannot mount a small tmpfs here (needs root and mount permission)');
      return;
    }
    try {
      const walDirectory = path.join(mountPoint, 'wal');
      await mkdir(walDirectory);
      const filler = path.join(mountPoint, 'filler');
      await writeFile(filler, Buffer.alloc(40 * 1024));
      let nowMs = 0;
      const { fatal, options: walOptions } = options(walDirectory, { segmentMaxBytes: 1024 * 1024, now: () => nowMs, diskFullRetryMs: 1000 });
      const wal = await WriteAheadLog.open(walOptions, [], 1);
      const acknowledged: number[] = [];
      let refused: unknown;
      for (let i = 0; i < 1000 && refused === undefined; i += 1) {
        try {
          const { seq, durable } = wal.append(payload(i));
          await durable;
          acknowledged.push(seq);
        } catch (error) {
          refused = error;
        }
      }
      assert.ok(refused instanceof WalFullError, `refused with ${String(refused)}`);
      assert.equal(wal.refusing, 'disk full');
      assert.equal(fatal.length, 0, 'a full disk is not fatal');
      await rm(filler);
      nowMs += 1000;
      // A second later an append is tried again, and now there is room.
      const afterSpace = wal.append(payload(5000));
      await afterSpace.durable;
      assert.equal(wal.refusing, undefined);
      await wal.close();
      const recovery = await recoverWal(walDirectory);
      assert.deepEqual(recovery.records.map((r) => r.seq), [...acknowledged, afterSpace.seq], 'exactly the acknowledged records, no partial one');
      assert.equal(recovery.tornTails, 0);
    } finally {
      execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
    }
  });
});
