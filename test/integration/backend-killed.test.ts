import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { encodeEventRow } from '../../src/event/copy-row.ts';
import { auditEventSchema } from '../../src/event/schema.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { RetryingSink } from '../../src/sink/retrying-sink.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

function queued(tenant: string): QueuedEvent {
  const id = randomUUID();
  const row = encodeEventRow(auditEventSchema.parse(sampleEvent({ tenant })), id, '2026-11-22T05:00:01.000Z');
  return { id, tenant, row, bytes: Buffer.byteLength(row) };
}

const WAITING_BACKEND = `SELECT pid FROM pg_stat_activity
  WHERE datname = current_database() AND application_name = 'audit-ingest' AND wait_event_type = 'Lock'`;

/**
 * The pid of the server's postmaster when it runs on this machine (the embedded one), so that a
 * backend can be SIGKILLed; undefined for a remote server, where a pid means nothing here.
 */
function localPostmasterPid(dataDirectory: string): number | undefined {
  try {
    return Number(readFileSync(path.join(dataDirectory, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
}

function parentPid(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

describe('a PostgreSQL backend dies during a batch write', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let locker: pg.Client;
  const uncaught: unknown[] = [];
  const capture = (error: unknown) => uncaught.push(error);
  const retries: unknown[] = [];
  let sink: RetryingSink;

  before(async () => {
    db = await createTestDatabase();
    process.on('uncaughtException', capture);
  });
  after(async () => {
    process.off('uncaughtException', capture);
    // After a crash restart the server refuses connections until its recovery is done.
    await waitFor(() => db.pool.query('SELECT 1').then(() => true, () => false), 30_000, 'the server to accept connections');
    await db.drop();
  });
  beforeEach(async () => {
    uncaught.length = 0;
    retries.length = 0;
    pool = createPool(db.url, { ...loadConfig({}).db, connectTimeoutMs: 2_000 }, pino({ level: 'silent' }));
    sink = new RetryingSink(new PostgresCopySink(pool, { copyTimeoutMs: 30_000 }), {
      maxAttempts: 0,
      baseDelayMs: 20,
      maxDelayMs: 200,
      onRetry: (error) => retries.push(error),
    });
    // A client of its own, not from a pool: a crash restart kills it too.
    locker = new pg.Client({ connectionString: db.url });
    locker.on('error', () => {});
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
  });
  afterEach(async () => {
    await locker.end().catch(() => {});
    await pool.end();
  });

  // Asked from outside the locker's transaction: pg_stat_activity is a snapshot per transaction.
  async function waitingBackend(other?: number): Promise<number> {
    let pid: number | undefined;
    await waitFor(
      async () => {
        const { rows } = await db.pool.query<{ pid: number }>(WAITING_BACKEND);
        pid = rows.find((row) => row.pid !== other)?.pid;
        return pid !== undefined;
      },
      10_000,
      'the write to wait on the lock',
    );
    return pid!;
  }

  it('pg_terminate_backend: the write is retried, nothing is thrown at the process, every event is stored once', async () => {
    const batch = Array.from({ length: 50 }, () => queued('terminated'));
    const write = sink.write(batch, { signal: new AbortController().signal });
    const first = await waitingBackend();
    await db.pool.query('SELECT pg_terminate_backend($1)', [first]);
    // The retry reconnects and waits on the lock again, from a new backend.
    const second = await waitingBackend(first);
    assert.notEqual(second, first);
    assert.ok(retries.length >= 1, 'the failure reached the retry chain');
    await locker.query('ROLLBACK');
    assert.deepEqual(await write, { inserted: 50, deadLettered: [] });
    assert.equal(await db.count("tenant = 'terminated'"), 50);
    assert.deepEqual(uncaught, [], 'no uncaught exception');
  });

  it('key rotation: a terminated backend fails the rotation, nothing is thrown at the process', async () => {
    const store = new ApiKeyStore(pool);
    const { stored } = await store.create('rotating');
    const apiKeyLocker = await db.pool.connect();
    try {
      await apiKeyLocker.query('BEGIN');
      await apiKeyLocker.query('LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE');
      const rotation = store.rotate(stored.id, 1000);
      rotation.catch(() => {});
      await db.pool.query('SELECT pg_terminate_backend($1)', [await waitingBackend()]);
      await assert.rejects(rotation, { code: '57P01' }); // admin_shutdown
    } finally {
      await apiKeyLocker.query('ROLLBACK');
      apiKeyLocker.release();
    }
    assert.deepEqual(uncaught, [], 'no uncaught exception');
    assert.ok(await store.rotate(stored.id, 1000), 'the pool works after');
  });

  it('SIGKILL of the waiting backend (crash restart of every backend): the write is retried until the server is back, every event stored once', async (t) => {
    const { rows } = await locker.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
    const postmaster = localPostmasterPid(rows[0]!.setting);
    const batch = Array.from({ length: 50 }, () => queued('killed'));
    const write = sink.write(batch, { signal: new AbortController().signal });
    const backend = await waitingBackend();
    if (postmaster === undefined || parentPid(backend) !== postmaster) {
      await locker.query('ROLLBACK');
      await write;
      t.skip('the database server does not run on this machine');
      return;
    }
    process.kill(backend, 'SIGKILL');
    // The postmaster ends every other backend (the locker's too, which releases the lock) and
    // restarts; the write fails, is retried through the recovery, and lands.
    assert.deepEqual(await write, { inserted: 50, deadLettered: [] });
    assert.ok(retries.length >= 1, 'the failure reached the retry chain');
    assert.equal(await db.count("tenant = 'killed'"), 50);
    assert.deepEqual(uncaught, [], 'no uncaught exception');
  });
});

describe('the service, when a backend dies under its batch write', () => {
  let db: TestDatabase;
  const uncaught: unknown[] = [];
  const capture = (error: unknown) => uncaught.push(error);
  before(async () => {
    db = await createTestDatabase();
    process.on('uncaughtException', capture);
  });
  after(async () => {
    process.off('uncaughtException', capture);
    await waitFor(() => db.pool.query('SELECT 1').then(() => true, () => false), 30_000, 'the server to accept connections');
    await db.drop();
  });

  for (const durability of ['memory', 'wal'] as const) {
    it(`DURABILITY=${durability}: stays up, retries, and stores every acknowledged event`, async (t) => {
      const { rows } = await db.pool.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
      const postmaster = localPostmasterPid(rows[0]!.setting);
      if (postmaster === undefined) {
        t.skip('the database server does not run on this machine');
        return;
      }
      uncaught.length = 0;
      const tenant = `killed-${durability}`;
      const service = await buildTestService(db.url, { DURABILITY: durability, RETRY_BASE_DELAY_MS: '20', RETRY_MAX_DELAY_MS: '200', BREAKER_OPEN_MS: '200', DB_CONNECT_TIMEOUT_MS: '2000' });
      const locker = new pg.Client({ connectionString: db.url });
      locker.on('error', () => {});
      try {
        await locker.connect();
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
        for (let i = 0; i < 30; i += 1) {
          const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant }) });
          assert.equal(response.statusCode, 202);
        }
        let backend: number | undefined;
        await waitFor(async () => {
          backend = (await db.pool.query<{ pid: number }>(WAITING_BACKEND)).rows[0]?.pid;
          return backend !== undefined;
        }, 10_000, 'a batch write to wait on the lock');
        assert.equal(parentPid(backend!), postmaster);
        process.kill(backend!, 'SIGKILL'); // PostgreSQL restarts every backend, the locker's too
        await waitFor(
          () => db.pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE tenant = $1', [tenant]).then((r) => r.rows[0]!.n === '30', () => false),
          30_000,
          'every acknowledged event to be stored',
        );
        assert.deepEqual(uncaught, [], 'no uncaught exception');
      } finally {
        await locker.end().catch(() => {});
        await service.close();
      }
    });
  }
});
