import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { acquireDataDirLock, DataDirLockedError, DataDirLockError, inspectDataDirLock } from '../../src/data-dir-lock.ts';
import { holdLockInChild } from '../helpers/lock-holder.ts';

describe('the DATA_DIR lock', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ingest-lock-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('is exclusive: a second acquire fails naming the directory and the holder, until the first is released', async () => {
    const directory = path.join(root, 'exclusive');
    const lock = await acquireDataDirLock(directory);
    const holder = JSON.parse(await readFile(lock.file, 'utf8')) as Record<string, unknown>;
    assert.equal(holder.pid, process.pid);
    assert.equal(holder.host, hostname());
    assert.ok(!Number.isNaN(Date.parse(String(holder.startedAt))));
    await assert.rejects(acquireDataDirLock(directory), (error: unknown) => {
      assert.ok(error instanceof DataDirLockedError);
      assert.equal(error.directory, directory);
      assert.equal(error.holder?.pid, process.pid);
      assert.match(error.message, new RegExp(`${directory}.*pid ${process.pid}`));
      assert.match(error.message, new RegExp(hostname()));
      return true;
    });
    assert.equal(inspectDataDirLock(directory), 'this-process');
    await lock.release();
    await lock.release(); // idempotent
    assert.equal(inspectDataDirLock(directory), 'free');
    const again = await acquireDataDirLock(directory);
    await again.release();
  });

  it('is held across processes and freed by the kernel when the holder is SIGKILLed', async () => {
    const directory = path.join(root, 'killed');
    const holder = holdLockInChild(directory);
    await holder.locked;
    const seen = inspectDataDirLock(directory);
    assert.ok(typeof seen === 'object' && seen.pid === holder.child.pid, `the child is named as the holder: ${JSON.stringify(seen)}`);
    await assert.rejects(acquireDataDirLock(directory), (error: unknown) => error instanceof DataDirLockedError && error.holder?.pid === holder.child.pid);
    holder.child.kill('SIGKILL');
    await holder.exited;
    // No stale-lock timeout to wait out: the lock went with the process.
    const lock = await acquireDataDirLock(directory);
    const written = JSON.parse(await readFile(lock.file, 'utf8')) as { pid: number };
    assert.equal(written.pid, process.pid, 'the new holder replaced the dead one in the file');
    await lock.release();
  });

  it('ignores a leftover lock file whose holder is gone (no lock held on it)', async () => {
    const directory = path.join(root, 'leftover');
    const lock = await acquireDataDirLock(directory);
    await lock.release();
    await writeFile(lock.file, JSON.stringify({ pid: 1, host: hostname(), startedAt: new Date(0).toISOString() }));
    const again = await acquireDataDirLock(directory);
    await again.release();
  });

  it('says what failed when the lock file cannot be created', async () => {
    const notADirectory = path.join(root, 'a-file');
    await writeFile(notADirectory, 'x');
    await assert.rejects(acquireDataDirLock(notADirectory), (error: unknown) => {
      assert.ok(error instanceof DataDirLockError);
      assert.match(error.message, /cannot create the lock file/);
      return true;
    });
  });
});
