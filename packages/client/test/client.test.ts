/**
 * The client against the real service (in this process, real embedded PostgreSQL, real HTTP on a
 * real socket): every recorded event stored once, per-event refusals surfaced, Retry-After
 * honoured, the buffer bounded. The SIGKILL test is in client-crash.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { findFreePort } from '../../../src/free-port.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/database.ts';
import { buildTestService, waitFor } from '../../../test/helpers/service.ts';
import { sqlError } from '../../../test/helpers/scripted-sink.ts';
import type { Sink } from '../../../src/sink/sink.ts';
import { AuditClient, type RecordResult, type RefusedResult } from '../src/index.ts';
import { auditEvent, createKey as createKeyIn, rowsOf } from './helpers.ts';

describe('AuditClient against the real service', () => {
  let db: TestDatabase;
  const createKey = (tenant: string) => createKeyIn(db, tenant);
  const rows = (tenant: string) => rowsOf(db, tenant);
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('records N events in gzip NDJSON batches with an API key: N rows, the ids the client assigned (UUIDv7), refusals per event', async () => {
    const key = await createKey('sdk-basic');
    const service = await buildTestService(db.url, { AUTH: 'on', ACK_MODE: 'committed' });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    const refused: RefusedResult[] = [];
    const client = new AuditClient({ url, apiKey: key, maxBatchSize: 100, onRefused: (result) => refused.push(result) });
    try {
      const count = 1000;
      const results = await Promise.all(Array.from({ length: count }, () => client.record(auditEvent())));
      assert.deepEqual(new Set(results.map((result) => result.status)), new Set(['stored']), 'ACK_MODE=committed: every event reported stored');
      const ids = results.map((result) => result.id);
      assert.equal(new Set(ids).size, count);
      for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a UUIDv7');
      assert.deepEqual(await rows('sdk-basic'), { count, distinct: count });
      const stored = await db.pool.query<{ id: string }>('SELECT id FROM events WHERE tenant = $1', ['sdk-basic']);
      assert.deepEqual(new Set(stored.rows.map((row) => row.id)), new Set(ids), 'the ids stored are the ids the client assigned');

      // An invalid event among valid ones: it alone is refused, with its field problem.
      const mixed = await Promise.all([client.record(auditEvent()), client.record(auditEvent({ occurred_at: 'yesterday' })), client.record(auditEvent())]);
      assert.deepEqual(mixed.map((result) => result.status), ['stored', 'refused', 'stored']);
      const bad = mixed[1] as RefusedResult;
      assert.equal(bad.code, 'INGEST_ERR_VALIDATION');
      assert.ok(bad.problems.some((problem) => problem.path === 'occurred_at'), JSON.stringify(bad.problems));
      // A batch of invalid events only (the service refuses the request whole, 400): each event
      // still gets its own problems, found by the index in the problem document.
      await client.flush();
      const lone = await Promise.all([client.record(auditEvent({ action: '' })), client.record(auditEvent({ occurred_at: 'never' }))]);
      assert.deepEqual(lone.map((result) => result.status), ['refused', 'refused']);
      assert.ok((lone[0] as RefusedResult).problems.some((problem) => problem.path === 'action'), JSON.stringify(lone[0]));
      assert.ok((lone[1] as RefusedResult).problems.some((problem) => problem.path === 'occurred_at'), JSON.stringify(lone[1]));
      assert.equal(refused.length, 3, 'onRefused heard each refusal');
      assert.deepEqual(await rows('sdk-basic'), { count: count + 2, distinct: count + 2 });

      // Another tenant's event with this key: 403 for the request, each event refused with the code.
      const other = await client.record(auditEvent({ tenant: 'someone-else' }));
      assert.equal(other.status, 'refused');
      assert.equal((other).code, 'INGEST_ERR_TENANT_MISMATCH');
    } finally {
      await client.close();
      await service.close();
    }
  });

  it('ACK_MODE=committed: events the service dead-letters (a write failing past its retries) are reported refused (207, INGEST_ERR_DEAD_LETTERED) and not sent again; the rest stored once', async () => {
    const key = await createKey('sdk-207');
    // The first write to the database fails (a lost connection) and the service does not retry
    // it itself (RETRY_MAX_ATTEMPTS=1): it sets its events aside in its dead-letter queue.
    let writes = 0;
    const failFirstWrite = (sink: Sink): Sink => ({
      write: (batch, options) => {
        writes += 1;
        if (writes === 1) return Promise.reject(sqlError('08006', 'connection lost (test)'));
        return sink.write(batch, options);
      },
    });
    const service = await buildTestService(db.url, { AUTH: 'on', ACK_MODE: 'committed', RETRY_MAX_ATTEMPTS: '1' }, { wrapBaseSink: failFirstWrite });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    let retries = 0;
    const client = new AuditClient({ url, apiKey: key, maxBatchSize: 50, onRetry: () => (retries += 1) });
    try {
      // One request of 50 first (the failing write), then 150 more.
      const first = await Promise.all(Array.from({ length: 50 }, () => client.record(auditEvent())));
      const then = await Promise.all(Array.from({ length: 150 }, () => client.record(auditEvent())));
      assert.equal(writes >= 2, true, 'the failing write happened, and later ones');
      for (const result of first) {
        assert.equal(result.status, 'refused', JSON.stringify(result));
        assert.equal((result).httpStatus, 207);
        assert.equal((result).code, 'INGEST_ERR_DEAD_LETTERED');
      }
      assert.deepEqual(new Set(then.map((result) => result.status)), new Set(['stored']));
      assert.equal(retries, 0, 'a dead-lettered event is for the operator to re-drive (npm run dlq), not sent again');
      assert.deepEqual(await rows('sdk-207'), { count: 150, distinct: 150 });
    } finally {
      await client.close();
      await service.close();
    }
  });

  it('a wrong API key: every event refused with the 401 code, none retried', async () => {
    const service = await buildTestService(db.url, { AUTH: 'on' });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    let retries = 0;
    const client = new AuditClient({ url, apiKey: 'aik_not-a-key', onRetry: () => (retries += 1) });
    try {
      const result = await client.record(auditEvent());
      assert.equal(result.status, 'refused');
      assert.equal((result).httpStatus, 401);
      assert.equal(retries, 0);
    } finally {
      await client.close();
      await service.close();
    }
  });

  it('honours Retry-After (a per-tenant rate limit refusing with 429) and splits batches above the burst (413): every retry waits at least what the service asked, every event stored once', async () => {
    const key = await createKey('sdk-limited');
    // A burst (40) below the batch size (50): each batch is first a 413, sent again in halves.
    const service = await buildTestService(db.url, { AUTH: 'on', TENANT_RATE_LIMIT: '100', TENANT_RATE_BURST: '40' });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    const retries: { delayMs: number; retryAfterMs: number | undefined; status: number | undefined }[] = [];
    const client = new AuditClient({
      url,
      apiKey: key,
      maxBatchSize: 50,
      concurrency: 2,
      onRetry: ({ delayMs, error }) => {
        const details = error as { retryAfterMs?: number; status?: number };
        retries.push({ delayMs, retryAfterMs: details.retryAfterMs, status: details.status });
      },
    });
    try {
      const count = 400;
      const results = await Promise.all(Array.from({ length: count }, () => client.record(auditEvent())));
      assert.deepEqual(new Set(results.map((result) => result.status)), new Set(['accepted']));
      const limited = retries.filter((retry) => retry.status === 429);
      assert.ok(limited.length > 0, 'the service refused some batches with 429');
      for (const retry of limited) {
        assert.ok(retry.retryAfterMs !== undefined && retry.retryAfterMs >= 1000, `Retry-After read: ${JSON.stringify(retry)}`);
        assert.ok(retry.delayMs >= retry.retryAfterMs && retry.delayMs < retry.retryAfterMs * 1.5, `waited Retry-After plus jitter: ${JSON.stringify(retry)}`);
      }
      const delays = new Set(limited.map((retry) => retry.delayMs));
      if (limited.length > 1) assert.ok(delays.size > 1, 'jittered: not every client waits the same');
      await waitFor(async () => (await rows('sdk-limited')).count >= count, 30_000, `${count} rows`);
      assert.deepEqual(await rows('sdk-limited'), { count, distinct: count });
    } finally {
      await client.close();
      await service.close();
    }
  });

  it('flushes on exit: a program that records and ends without close() still sends every event (beforeExit)', async () => {
    const key = await createKey('sdk-exit');
    const service = await buildTestService(db.url, { AUTH: 'on' });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/record-and-exit.ts');
      const child = spawn(process.execPath, ['--import', 'tsx', fixture], { env: { ...process.env, AUDIT_URL: url, AUDIT_API_KEY: key, EVENTS: '250' }, stdio: ['ignore', 'inherit', 'inherit'] });
      const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      assert.equal(code, 0);
      // maxWaitMs is a minute and the process exited at once: the batches left through close().
      await waitFor(async () => (await rows('sdk-exit')).count >= 250, 30_000, '250 rows');
      assert.deepEqual(await rows('sdk-exit'), { count: 250, distinct: 250 });
    } finally {
      await service.close();
    }
  });

  it('bounds its memory: with nothing answering, record() rejects with AUDIT_CLIENT_ERR_FULL past capacity; close() gives the rest up as failed', async () => {
    const port = await findFreePort(); // nothing listens there: every attempt is refused and retried
    const capacity = 20;
    const maxBatchSize = 5;
    const client = new AuditClient({ url: `http://127.0.0.1:${port}`, capacity, maxBatchSize, concurrency: 1, retry: { initialDelayMs: 10, maxDelayMs: 50 } });
    const taken: Promise<RecordResult>[] = [];
    let full: unknown;
    for (let i = 0; i < 1000; i += 1) {
      const before = client.pending;
      const result = client.record(auditEvent());
      if (client.pending === before) {
        full = await result.catch((error: unknown) => error);
        break;
      }
      taken.push(result);
    }
    assert.ok(full !== undefined, 'record() refused once the buffer was full');
    assert.equal((full as { code?: string }).code, 'AUDIT_CLIENT_ERR_FULL');
    assert.ok(taken.length >= capacity && taken.length <= capacity + maxBatchSize, `${taken.length} events held: at most capacity + concurrency × maxBatchSize`);
    await client.close({ deadlineMs: 200 });
    const outcomes = await Promise.allSettled(taken);
    const results = outcomes.filter((outcome) => outcome.status === 'fulfilled').map((outcome) => outcome.value);
    assert.ok(results.length > 0);
    assert.deepEqual(new Set(results.map((result) => result.status)), new Set(['failed']), 'given up at the close deadline, reported, not lost silently');
    await assert.rejects(client.record(auditEvent()), { code: 'AUDIT_CLIENT_ERR_CLOSED' });
  });

  it('retry.maxAttempts: a batch nobody answers is given up after that many tries, each event reported failed with the last error', async () => {
    const port = await findFreePort();
    const failed: string[] = [];
    let retries = 0;
    const client = new AuditClient({
      url: `http://127.0.0.1:${port}`,
      retry: { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5 },
      onRetry: () => (retries += 1),
      onFailed: (result) => failed.push(result.id),
    });
    try {
      const results = await Promise.all([client.record(auditEvent()), client.record(auditEvent())]);
      assert.deepEqual(results.map((result) => result.status), ['failed', 'failed']);
      const error = (results[0] as { error: { code?: string } }).error;
      assert.equal(error.code, 'AUDIT_CLIENT_ERR_RETRYABLE');
      assert.equal(retries, 2, 'three tries: two retries');
      await new Promise<void>((resolve) => setImmediate(resolve));
      assert.deepEqual(failed, results.map((result) => result.id));
    } finally {
      await client.close();
    }
  });
});
