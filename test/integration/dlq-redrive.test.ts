import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { DeadLetterQueue, toDeadLetterRecord } from '../../src/dlq/dead-letter-queue.ts';
import {
  CLAIM_SUFFIX,
  claimDeadLetterFile,
  deadLetterDirectory,
  listDeadLetterFiles,
  readDeadLetterFiles,
} from '../../src/dlq/dlq-files.ts';
import { REDRIVE_LOCK_NAME } from '../../src/dlq/redrive-lock.ts';
import { redrive, RedriveInterruptedError } from '../../src/dlq/redrive.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';
import { runScript } from '../helpers/run-script.ts';

const AWKWARD = 'tab\there, newline\nthere, cr\rback\\slash \\N \\. Zoë 👩‍💻';
const signal = new AbortController().signal;
const clock = { now: () => Date.now() };

const queued = (fields: Record<string, unknown>): QueuedEvent => queuedEvent({ tenant: 'dlq', ...fields });

const runCli = (args: string[], env: Record<string, string>) => runScript('dlq', args, env);

describe('dead-letter re-drive', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let sink: PostgresCopySink;
  let dataDir: string;
  let directory: string;
  const cliEnv = () => ({ DATA_DIR: dataDir, DATABASE_URL: db.url, LOG_LEVEL: 'silent' });

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
    sink = new PostgresCopySink(pool, { copyTimeoutMs: 5_000 });
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-dlq-redrive-'));
    directory = deadLetterDirectory(dataDir);
  });
  after(async () => {
    await pool.end();
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps poison in the DLQ until the cause is fixed, then stores everything once', async () => {
    await pool.query(`ALTER TABLE events ADD CONSTRAINT events_no_poison CHECK (action <> 'poison')`);
    const poison = [queued({ action: 'poison' }), queued({ action: 'poison', actor: { id: AWKWARD } })];
    const good = [queued({ action: AWKWARD, metadata: { text: AWKWARD } }), queued({}), queued({})];
    const refusal = await sink.write([poison[0]!], { signal }).then(
      () => assert.fail('the CHECK constraint should refuse the poison event'),
      (error: unknown) => error,
    );
    assert.equal((refusal as { code?: string }).code, '23514');

    // The service dead-letters: poison for good, the others (say) after a long outage, interleaved.
    const queue = new DeadLetterQueue({ directory, clock, maxFileBytes: 2048 });
    await queue.append([good[0]!, poison[0]!, good[1]!].map((event) => toDeadLetterRecord(event, refusal, 3, clock.now())));
    await queue.append([poison[1]!, good[2]!].map((event) => toDeadLetterRecord(event, refusal, 3, clock.now())));
    await queue.close();
    const filesBefore = (await readdir(directory)).length;
    assert.ok(filesBefore > 1, 'the small maxFileBytes rotated the files');

    // 1. The constraint is still there: good records are stored, poison stays, with attempts counted.
    const first = await redrive({ directory, sink, batchSize: 10 });
    assert.deepEqual(
      { replayed: first.replayed, stored: first.stored, duplicates: first.duplicates, stillFailing: first.stillFailing },
      { replayed: 5, stored: 3, duplicates: 0, stillFailing: 2 },
    );
    assert.equal(await db.count("tenant = 'dlq'"), 3);
    const left = (await readDeadLetterFiles(directory)).flatMap((file) => file.records);
    assert.deepEqual(left.map((r) => r.event.id).sort(), poison.map((p) => p.id).sort());
    for (const record of left) {
      assert.equal(record.attempts, 4);
      assert.equal(record.error.sqlstate, '23514');
      assert.match(record.error.message, /events_no_poison/);
      assert.ok(record.last_redrive_at);
    }

    // The CLI sees the same state.
    const stats = await runCli(['stats', '--json'], cliEnv());
    assert.equal(stats.code, 0, stats.stderr);
    const summary = JSON.parse(stats.stdout) as { files: number; records: number; bySqlstate: Record<string, number> };
    assert.equal(summary.records, 2);
    assert.deepEqual(summary.bySqlstate, { '23514': 2 });
    const listed = await runCli(['list', '--limit', '1'], cliEnv());
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(listed.stdout.trim().split('\n').length, 1);
    assert.match(listed.stdout, /\sdlq\s+23514\s+attempts=4\s/);
    const stillFailing = await runCli(['redrive'], cliEnv());
    assert.equal(stillFailing.code, 1, 'exit 1 while records still fail');
    assert.match(stillFailing.stderr, /2 records still fail/);

    // 2. The bug is fixed: a re-drive (through the CLI) stores the rest and removes the files.
    await pool.query('ALTER TABLE events DROP CONSTRAINT events_no_poison');
    const fixed = await runCli(['redrive', '--json'], cliEnv());
    assert.equal(fixed.code, 0, fixed.stderr);
    const { files, ...fixedCounts } = JSON.parse(fixed.stdout) as { files: number };
    assert.ok(files >= 1);
    assert.deepEqual(fixedCounts, {
      replayed: 2,
      stored: 2,
      duplicates: 0,
      stillFailing: 0,
      corruptLines: 0,
      tornLines: 0,
    });
    assert.equal(await db.count("tenant = 'dlq'"), 5);
    assert.deepEqual((await readdir(directory)).filter((name) => name.startsWith('dlq-')), []);
    const { rows } = await pool.query<{ action: string; metadata: unknown }>('SELECT action, metadata FROM events WHERE id = $1', [good[0]!.id]);
    assert.deepEqual(rows[0], { action: AWKWARD, metadata: { text: AWKWARD } }, 'stored byte for byte');

    // 3. Again: nothing to do, nothing stored twice.
    assert.deepEqual(await redrive({ directory, sink, batchSize: 10 }), {
      files: 0, replayed: 0, stored: 0, duplicates: 0, stillFailing: 0, corruptLines: 0, tornLines: 0,
    });
    const empty = JSON.parse((await runCli(['stats', '--json'], cliEnv())).stdout) as { records: number };
    assert.equal(empty.records, 0);

    // 4. Records already stored (a crash after the insert, before the file was rewritten) are duplicates.
    const replay = new DeadLetterQueue({ directory, clock });
    await replay.append([...good, ...poison].map((event) => toDeadLetterRecord(event, refusal, 3, clock.now())));
    await replay.close();
    const again = await redrive({ directory, sink, batchSize: 2 });
    assert.deepEqual({ stored: again.stored, duplicates: again.duplicates, stillFailing: again.stillFailing }, { stored: 0, duplicates: 5, stillFailing: 0 });
    assert.equal(await db.count("tenant = 'dlq'"), 5);
  });

  it('isolates a still-refused record by bisecting, as the service does, not one write per record', async () => {
    await pool.query(`ALTER TABLE events ADD CONSTRAINT events_no_bisect_poison CHECK (action <> 'bisect-poison')`);
    try {
      const events = Array.from({ length: 64 }, (_, i) => queued({ tenant: 'bisect', action: i === 41 ? 'bisect-poison' : 'document.update' }));
      const queue = new DeadLetterQueue({ directory, clock, maxFileBytes: 1024 * 1024 });
      await queue.append(events.map((event) => toDeadLetterRecord(event, new Error('outage'), 3, clock.now())));
      await queue.close();
      let writes = 0;
      const counting = { write: (batch: readonly QueuedEvent[], options: { signal: AbortSignal }) => ((writes += 1), sink.write(batch, options)) };
      const result = await redrive({ directory, sink: counting, batchSize: 64 });
      assert.deepEqual({ stored: result.stored, stillFailing: result.stillFailing }, { stored: 63, stillFailing: 1 });
      // One refused record in 64: 1 + 2 per level of a 6-level bisection = 13 writes; one at a
      // time after the first refusal would be 65.
      assert.ok(writes <= 13, `${writes} writes`);
      const left = (await readDeadLetterFiles(directory)).flatMap((file) => file.records);
      assert.deepEqual(left.map((record) => record.event.id), [events[41]!.id]);
      assert.equal(left[0]!.attempts, 4);
    } finally {
      await pool.query('ALTER TABLE events DROP CONSTRAINT events_no_bisect_poison');
      await rm(directory, { recursive: true, force: true });
    }
  });

  it('stops without losing anything when the database is unreachable, and puts the file back whole', async () => {
    const queue = new DeadLetterQueue({ directory, clock });
    const events = [queued({ tenant: 'unreachable' }), queued({ tenant: 'unreachable' })];
    await queue.append(events.map((event) => toDeadLetterRecord(event, new Error('connection lost'), 5, clock.now())));
    await queue.close();
    const nowhere = createPool('postgres://nobody:nothing@127.0.0.1:1/none', { ...loadConfig({}).db, connectTimeoutMs: 500 }, pino({ level: 'silent' }));
    try {
      await assert.rejects(redrive({ directory, sink: new PostgresCopySink(nowhere, { copyTimeoutMs: 1_000 }), batchSize: 10 }), (error: unknown) => {
        assert.ok(error instanceof RedriveInterruptedError);
        assert.equal(error.code, 'DLQ_ERR_REDRIVE_INTERRUPTED');
        assert.equal(error.partial.stored, 0);
        return true;
      });
    } finally {
      await nowhere.end();
    }
    const records = (await readDeadLetterFiles(directory)).flatMap((file) => file.records);
    assert.deepEqual(records.map((r) => [r.event.id, r.attempts]), events.map((e) => [e.id, 5]), 'untouched');
    assert.equal((await readdir(directory)).some((name) => name.endsWith('.redrive')), false);
    assert.equal(await db.count("tenant = 'unreachable'"), 0);
    assert.equal((await redrive({ directory, sink, batchSize: 10 })).stored, 2);
  });

  it('finishes the work of a re-drive that crashed mid-file', async () => {
    const queue = new DeadLetterQueue({ directory, clock, maxFileBytes: 1 });
    const events = [queued({ tenant: 'crashed' }), queued({ tenant: 'crashed' })];
    await queue.append(events.map((event) => toDeadLetterRecord(event, new Error('x'), 1, clock.now())));
    await queue.close();
    const [unfinished, rewritten] = await listDeadLetterFiles(directory);
    // One file claimed and never put back; one claimed, rewritten (here: to itself) and not cleaned up.
    await claimDeadLetterFile(unfinished!);
    await copyFile(rewritten!, `${rewritten}${CLAIM_SUFFIX}`);
    await writeFile(`${rewritten}.tmp`, 'half a rewrite');
    assert.equal((await readDeadLetterFiles(directory)).flatMap((file) => file.records).length, 2, 'claimed files still count');
    const result = await redrive({ directory, sink, batchSize: 10 });
    assert.deepEqual([result.stored, result.stillFailing], [2, 0]);
    assert.deepEqual(await readdir(directory), []);
    assert.equal(await db.count("tenant = 'crashed'"), 2);
  });

  it('refuses to run beside another live re-drive, and takes over the lock of a dead one', async () => {
    const queue = new DeadLetterQueue({ directory, clock });
    await queue.append([toDeadLetterRecord(queued({ tenant: 'locked' }), new Error('x'), 1, clock.now())]);
    await queue.close();
    const lockPath = path.join(directory, REDRIVE_LOCK_NAME);
    await writeFile(lockPath, `${process.pid}\n`);
    await assert.rejects(redrive({ directory, sink, batchSize: 10 }), { code: 'DLQ_ERR_REDRIVE_BUSY' });
    const busy = await runCli(['redrive'], cliEnv());
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, /another re-drive/);

    const exited = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => exited.on('exit', resolve));
    await writeFile(lockPath, `${exited.pid}\n`);
    assert.equal((await redrive({ directory, sink, batchSize: 10 })).stored, 1);
    assert.equal((await readdir(directory)).includes(REDRIVE_LOCK_NAME), false, 'released');
  });

  // Without DATABASE_URL the re-drive uses the embedded database under DATA_DIR, as `keys` does:
  // test/integration/cli-tools.test.ts.
  it('exits 2 with a clear message when the command is unknown', async () => {
    const unknown = await runCli(['explode'], { DATA_DIR: dataDir });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "explode"/);
  });
});
