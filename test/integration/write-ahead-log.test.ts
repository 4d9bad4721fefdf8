import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { WalFatalError, WalFullError } from '../../src/wal/errors.ts';
import { recoverWal } from '../../src/wal/recover.ts';
import { WriteAheadLog, type WalOptions } from '../../src/wal/write-ahead-log.ts';

const payload = (i: number) => Buffer.from(`${String(i).padStart(8, '0')}\tacme\t${'x'.repeat(100)}\n`);

function options(directory: string, overrides: Partial<WalOptions> = {}) {
  const groups: number[] = [];
  const fatal: WalFatalError[] = [];
  return {
    groups,
    fatal,
    options: {
      directory,
      segmentMaxBytes: 4096,
      maxBytes: 1024 * 1024,
      now: () => performance.now(),
      onGroupCommit: (_ms: number, records: number) => groups.push(records),
      onFatal: (error: WalFatalError) => fatal.push(error),
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
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal((await readdir(directory)).filter((n) => n.endsWith('.wal')).length, before, 'half-settled segments stay');
    wal.settle(seqs.filter((seq) => seq % 2 === 1));
    // Deletion is asynchronous: wait for the directory to shrink to the current segment.
    for (let i = 0; i < 100 && (await readdir(directory)).filter((n) => n.endsWith('.wal')).length > 1; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal((await readdir(directory)).filter((n) => n.endsWith('.wal')).length, 1, 'only the current segment is left');
    await wal.close();
  });

  it('refuses appends past WAL_MAX_BYTES until settled segments are removed', async () => {
    const { options: walOptions } = options(directory, { maxBytes: 2048, segmentMaxBytes: 1024 });
    const wal = await WriteAheadLog.open(walOptions, [], 1);
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
    assert.ok(refused instanceof WalFullError, 'refused once full');
    assert.match(wal.refusing ?? '', /WAL_MAX_BYTES/);
    wal.settle(seqs);
    for (let i = 0; i < 100 && wal.refusing; i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(wal.refusing, undefined);
    await wal.append(payload(999)).durable;
    await wal.close();
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
