import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { DeadLetterQueue, DeadLetterWriteError, toDeadLetterRecord } from '../../src/dlq/dead-letter-queue.ts';
import { toQueuedEvent, type DeadLetterRecord } from '../../src/dlq/dead-letter-record.ts';
import { claimDeadLetterFile, listDeadLetterFiles, readDeadLetterFiles } from '../../src/dlq/dlq-files.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { queuedEvent } from '../helpers/events.ts';

const run = promisify(execFile);
const clock = { now: () => Date.parse('2026-11-22T05:00:00.000Z') };

const queued = (fields: Record<string, unknown> = {}): QueuedEvent => queuedEvent(fields);

function record(fields: Record<string, unknown> = {}, attempts = 3): DeadLetterRecord {
  return toDeadLetterRecord(queued(fields), Object.assign(new Error('new row violates check constraint'), { code: '23514' }), attempts, clock.now());
}

const ids = async (directory: string) => (await readDeadLetterFiles(directory)).flatMap((file) => file.records.map((r) => r.event.id));

describe('DeadLetterQueue', () => {
  let scratch: string;
  let n = 0;
  const freshDirectory = () => path.join(scratch, `dlq-${(n += 1)}`);

  before(async () => {
    scratch = await mkdtemp(path.join(tmpdir(), 'ingest-dlq-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('appends one NDJSON line per record, readable back in order', async () => {
    const directory = freshDirectory();
    const queue = new DeadLetterQueue({ directory, clock });
    const records = [record({ action: 'a\tb\nc\\N' }), record(), record()];
    await queue.append(records);
    await queue.append([]);
    const names = await readdir(directory);
    assert.equal(names.length, 1);
    assert.match(names[0]!, /^dlq-2026-11-22T05-00-00-000Z-\d{6}\.ndjson$/);
    const text = await readFile(path.join(directory, names[0]!), 'utf8');
    assert.equal(text.split('\n').length, 4, 'three lines, each newline-terminated');
    const [file] = await readDeadLetterFiles(directory);
    assert.deepEqual(file!.records, records);
    assert.equal(file!.records[0]!.event.action, 'a\tb\nc\\N');
    assert.deepEqual(file!.records[0]!.error, { sqlstate: '23514', message: 'new row violates check constraint' });
    assert.deepEqual(await queue.stats(), { files: 1, records: 3, bytes: Buffer.byteLength(text) });
    assert.equal(queue.healthy, true);
    await queue.close();
  });

  it('rotates to a new file before an append would pass maxFileBytes', async () => {
    const directory = freshDirectory();
    const lineBytes = Buffer.byteLength(JSON.stringify(record())) + 1;
    const queue = new DeadLetterQueue({ directory, clock, maxFileBytes: lineBytes * 3 + 10 });
    const records = Array.from({ length: 10 }, () => record());
    await queue.append(records.slice(0, 4));
    for (const one of records.slice(4)) await queue.append([one]);
    const files = await listDeadLetterFiles(directory);
    assert.equal(files.length, 4, '3 + 3 + 3 + 1');
    for (const file of files) assert.ok((await stat(file)).size <= queue.maxFileBytes, `${file} is within the limit`);
    assert.deepEqual(await ids(directory), records.map((r) => r.event.id));
    await queue.close();
  });

  it('gives a line larger than maxFileBytes a file of its own', async () => {
    const directory = freshDirectory();
    const queue = new DeadLetterQueue({ directory, clock, maxFileBytes: 100 });
    await queue.append([record(), record()]);
    assert.equal((await listDeadLetterFiles(directory)).length, 2);
    await queue.close();
  });

  it('serialises concurrent appends in call order, with no interleaved or torn lines', async () => {
    const directory = freshDirectory();
    const queue = new DeadLetterQueue({ directory, clock, maxFileBytes: 16 * 1024 });
    const calls = Array.from({ length: 40 }, (_, call) =>
      Array.from({ length: 5 }, () => record({ metadata: { call, pad: 'x'.repeat(200 + call * 37) } })),
    );
    await Promise.all(calls.map((records) => queue.append(records)));
    const files = await readDeadLetterFiles(directory);
    assert.ok(files.length > 1, 'it rotated along the way');
    for (const file of files) {
      assert.deepEqual(file.corruptLines, []);
      assert.equal(file.tornTail, null);
    }
    assert.deepEqual(await ids(directory), calls.flat().map((r) => r.event.id));
    await queue.close();
  });

  it('reads past a torn last line (a crash mid-append), reports it, and counts only whole lines', async () => {
    const directory = freshDirectory();
    const queue = new DeadLetterQueue({ directory, clock });
    const records = [record(), record()];
    await queue.append(records);
    await queue.close();
    const [filePath] = await listDeadLetterFiles(directory);
    const torn = JSON.stringify(record()).slice(0, 57);
    await appendFile(filePath!, torn);
    const [file] = await readDeadLetterFiles(directory);
    assert.deepEqual(file!.records, records);
    assert.equal(file!.tornTail, torn);
    assert.equal((await queue.stats()).records, 2);
  });

  it('reports a corrupt line in the middle and still reads the records around it', async () => {
    const directory = freshDirectory();
    const queue = new DeadLetterQueue({ directory, clock });
    const [first, second] = [record(), record()];
    await queue.append([first]);
    const [filePath] = await listDeadLetterFiles(directory);
    await appendFile(filePath!, '{"not":"a record"}\n');
    await queue.append([second]);
    const [file] = await readDeadLetterFiles(directory);
    assert.deepEqual(file!.records, [first, second]);
    assert.deepEqual(file!.corruptLines, [{ lineNumber: 2, text: '{"not":"a record"}' }]);
    await queue.close();
  });

  it('moves to a new file when a re-drive claimed the current one, and writes the append there', async () => {
    const directory = freshDirectory();
    const queue = new DeadLetterQueue({ directory, clock });
    const [first, second] = [record(), record()];
    await queue.append([first]);
    const [original] = await listDeadLetterFiles(directory);
    const claimed = await claimDeadLetterFile(original!);
    await queue.append([second]);
    // The append landed in the claimed file first, was noticed, and was written again to a new file:
    // the re-drive may have read the claimed file before it, and nothing may be lost.
    const files = await readDeadLetterFiles(directory);
    assert.deepEqual(
      files.map((file) => [path.basename(file.path).endsWith('.redrive'), file.records.map((r) => r.event.id)]),
      [
        [true, [first.event.id, second.event.id]],
        [false, [second.event.id]],
      ],
    );
    assert.equal(files[0]!.path, claimed);
    await queue.close();
  });

  it('fails loudly with DLQ_ERR_WRITE when the directory cannot be created, and recovers', async () => {
    const blocker = path.join(scratch, `blocker-${randomUUID()}`);
    await writeFile(blocker, 'a regular file where a directory should be');
    const queue = new DeadLetterQueue({ directory: path.join(blocker, 'dlq'), clock });
    await assert.rejects(queue.append([record()]), (error: unknown) => {
      assert.ok(error instanceof DeadLetterWriteError);
      assert.equal(error.code, 'DLQ_ERR_WRITE');
      assert.equal((error.cause as NodeJS.ErrnoException).code, 'ENOTDIR');
      assert.match(error.message, /ENOTDIR/);
      return true;
    });
    assert.equal(queue.healthy, false);
    assert.equal(queue.lastError?.code, 'DLQ_ERR_WRITE');
    await assert.rejects(queue.probe(), { code: 'DLQ_ERR_WRITE' });

    await rm(blocker);
    await queue.probe();
    assert.equal(queue.healthy, true, 'a successful probe clears it');
    await queue.append([record()]);
    assert.equal((await queue.stats()).records, 1);
    assert.equal(queue.lastError?.code, 'DLQ_ERR_WRITE', 'the last error stays for diagnosis');
    await queue.close();
  });

  it('on a full disk (a 64 KiB tmpfs) fails with DLQ_ERR_WRITE, keeps whole lines only, and resumes', async (t) => {
    const mountPoint = path.join(scratch, `full-${randomUUID()}`);
    await mkdir(mountPoint);
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountPoint]);
    } catch {
      t.skip('mounting a tmpfs needs root with CAP_SYS_ADMIN');
      return;
    }
    try {
      const directory = path.join(mountPoint, 'dlq');
      const queue = new DeadLetterQueue({ directory, clock });
      const big = () => record({ metadata: { pad: 'x'.repeat(3000) } });
      const acknowledged: DeadLetterRecord[] = [];
      let failure: unknown;
      while (failure === undefined && acknowledged.length < 100) {
        const batch = [big(), big()];
        await queue.append(batch).then(() => acknowledged.push(...batch), (error: unknown) => (failure = error));
      }
      assert.equal((failure as DeadLetterWriteError).code, 'DLQ_ERR_WRITE');
      assert.equal(((failure as Error).cause as NodeJS.ErrnoException).code, 'ENOSPC');
      assert.equal(queue.healthy, false);
      await assert.rejects(queue.append([big()]), { code: 'DLQ_ERR_WRITE' });
      const files = await readDeadLetterFiles(directory);
      assert.equal(files.length, 1, 'retries do not leave a trail of empty files');
      assert.deepEqual(files[0]!.records, acknowledged, 'every acknowledged record, and nothing torn');
      assert.equal(files[0]!.tornTail, null);

      await run('mount', ['-o', 'remount,size=1m', mountPoint]);
      const later = big();
      await queue.append([later]);
      assert.equal(queue.healthy, true);
      assert.deepEqual(await ids(directory), [...acknowledged, later].map((r) => r.event.id));
      await queue.close();
    } finally {
      await run('umount', [mountPoint]);
    }
  });

  it('fails with DLQ_ERR_WRITE when the directory path is an existing file', async () => {
    const file = path.join(scratch, `file-${randomUUID()}`);
    await writeFile(file, '');
    const queue = new DeadLetterQueue({ directory: file, clock });
    await assert.rejects(queue.append([record()]), { code: 'DLQ_ERR_WRITE' });
    assert.equal(queue.healthy, false);
  });
});

describe('toDeadLetterRecord', () => {
  it('records the SQLSTATE of a PostgreSQL error and nothing for other codes', () => {
    const event = queued();
    const pgLike = Object.assign(new Error('duplicate key'), { code: '23505' });
    assert.deepEqual(toDeadLetterRecord(event, pgLike, 2, clock.now()).error, { sqlstate: '23505', message: 'duplicate key' });
    const network = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    assert.equal(toDeadLetterRecord(event, network, 1, clock.now()).error.sqlstate, null);
    assert.deepEqual(toDeadLetterRecord(event, 'a string', 1, clock.now()).error, { sqlstate: null, message: 'a string' });
    const full = toDeadLetterRecord(event, pgLike, 2, clock.now());
    assert.equal(full.attempts, 2);
    assert.equal(full.dead_lettered_at, '2026-11-22T05:00:00.000Z');
    assert.deepEqual(toQueuedEvent(full), event, 'the record re-encodes to the queued row');
  });

  it('keeps an undecodable row verbatim rather than dropping the event', () => {
    const id = randomUUID();
    const row = `${id}\tonly\tthree fields\n`;
    const dead = toDeadLetterRecord({ id, tenant: 'only', row, bytes: Buffer.byteLength(row) }, new Error('x'), 1, clock.now());
    assert.equal(dead.event.id, id);
    assert.equal(dead.row, row);
    assert.deepEqual(toQueuedEvent(dead), { id, tenant: 'only', row, bytes: Buffer.byteLength(row) });
  });
});
