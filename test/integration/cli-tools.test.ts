/**
 * The operator tools (`npm run keys`, `npm run dlq`, `npm run events`, `npm run partitions`): --help answers with the
 * usage and exit 0, an unknown command with the usage and exit 2 (never a stack trace), and
 * every tool finds the database the way the service does: DATABASE_URL, else the embedded server
 * of a service running on the same DATA_DIR.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres.ts';
import { migrate } from '../../src/db/migrate.ts';
import { DeadLetterQueue, toDeadLetterRecord } from '../../src/dlq/dead-letter-queue.ts';
import { deadLetterDirectory } from '../../src/dlq/dlq-files.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';

const SCRIPTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(tool: string, args: string[], env: Record<string, string> = {}): Promise<Result> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(SCRIPTS, `${tool}.ts`), ...args], {
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

const NO_STACK = /\n\s+at .+:\d+:\d+/;

describe('command-line tools: usage', () => {
  for (const tool of ['keys', 'dlq', 'events', 'partitions', 'replication']) {
    it(`${tool} --help prints the usage and exits 0`, async () => {
      for (const flag of ['--help', '-h']) {
        const result = await run(tool, [flag], { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
        assert.equal(result.code, 0, `${flag}: ${result.stderr}`);
        assert.match(result.stdout, new RegExp(`^usage: npm run ${tool} -- `, 'm'));
        assert.doesNotMatch(result.stderr, NO_STACK);
      }
    });

    it(`${tool}: an unknown command or option prints the usage and exits 2, without a stack trace`, async () => {
      for (const args of [['frobnicate'], ['--no-such-option'], []]) {
        const result = await run(tool, args, { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
        assert.match(result.stderr, new RegExp(`usage: npm run ${tool} -- `));
        assert.doesNotMatch(result.stderr, NO_STACK);
      }
    });
  }
});

describe('command-line tools: the database', () => {
  let database: TestDatabase;
  let dataDir: string;
  let embedded: EmbeddedDatabase;
  const logger = pino({ level: 'silent' });

  before(async () => {
    database = await createTestDatabase();
    // A "running service's" embedded server on DATA_DIR/postgres, as npm start without DATABASE_URL makes.
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-cli-'));
    embedded = await startEmbeddedPostgres({ dataDir: path.join(dataDir, 'postgres'), logger, ephemeral: true });
    await migrate(embedded.url, logger);
  });
  after(async () => {
    await embedded.stop();
    await rm(dataDir, { recursive: true, force: true });
    await database.drop();
  });

  it('dlq redrive finds the embedded database of a service running on DATA_DIR, as keys does', async () => {
    const event = queuedEvent({ tenant: 'cli' });
    const queue = new DeadLetterQueue({ directory: deadLetterDirectory(dataDir), clock: { now: () => Date.now() } });
    await queue.append([toDeadLetterRecord(event, new Error('constraint fixed since'), 1, Date.now())]);

    const result = await run('dlq', ['redrive', '--json'], { DATA_DIR: dataDir, DATABASE_URL: '' });
    assert.equal(result.code, 0, result.stderr);
    assert.equal((JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { stored: number }).stored, 1);

    const client = new pg.Client({ connectionString: embedded.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ count: string }>("select count(*) from events where tenant = 'cli'");
      assert.equal(rows[0]!.count, '1', 'stored in the embedded database');
    } finally {
      await client.end();
    }
  });

  it('events tail shows the last stored events, and events url prints a URL that connects', async () => {
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      await client.query(
        `insert into events (id, tenant, occurred_at, received_at, action, actor_id)
         values (gen_random_uuid(), 'tail', now(), now() - interval '1 minute', 'first', 'u1'),
                (gen_random_uuid(), 'tail', now(), now(), 'second', 'u2'),
                (gen_random_uuid(), 'other', now(), now(), 'theirs', 'u3')`,
      );
    } finally {
      await client.end();
    }
    const tail = await run('events', ['tail', '--tenant', 'tail', '--limit', '5'], { DATABASE_URL: database.url });
    assert.equal(tail.code, 0, tail.stderr);
    const lines = tail.stdout.trim().split('\n').map((line) => JSON.parse(line) as { action: string; tenant: string });
    assert.deepEqual(lines.map((line) => line.action), ['second', 'first'], 'newest first, that tenant only');

    const url = await run('events', ['url'], { DATA_DIR: dataDir, DATABASE_URL: '' });
    assert.equal(url.code, 0, url.stderr);
    const probe = new pg.Client({ connectionString: url.stdout.trim() });
    await probe.connect();
    await probe.end();
  });

  it('partitions split-default gives a day held in the default partition its own partition, and status lists it', async () => {
    await database.pool.query(
      `insert into events (id, tenant, occurred_at, received_at, action, actor_id)
       values (gen_random_uuid(), 'late', '2020-01-05T10:00:00Z', now(), 'late', 'u1')`,
    );
    const split = await run('partitions', ['split-default'], { DATABASE_URL: database.url });
    assert.equal(split.code, 0, split.stderr);
    const report = JSON.parse(split.stdout.trim()) as { created: string[]; movedFromDefault: number };
    assert.ok(report.created.includes('events_p20200105') && report.movedFromDefault >= 1, split.stdout);
    const status = await run('partitions', ['status'], { DATABASE_URL: database.url });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^events_p20200105\tFOR VALUES FROM \('2020-01-0[45] [^']+'\) TO/m);
    assert.match(status.stdout, /^events_default\tDEFAULT\t0 rows$/m);
  });
});
