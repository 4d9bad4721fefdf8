/**
 * The client across a service SIGKILL: the service runs as a child process (src/server.ts, the
 * write-ahead log on, embedded-run PostgreSQL), is killed mid-stream and restarted on the same
 * DATA_DIR and port; the client retries what it had not seen acknowledged with the same ids.
 * Rows afterwards = events recorded, each exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findFreePort } from '../../../src/free-port.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/database.ts';
import { startServerProcess } from '../../../test/helpers/server-process.ts';
import { waitFor } from '../../../test/helpers/service.ts';
import { AuditClient, type RecordResult } from '../src/index.ts';

describe('AuditClient across a service SIGKILL', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'client-crash-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('rows = events recorded, exactly once, when the service is SIGKILLed mid-stream and restarted', async (t) => {
    const port = await findFreePort();
    // Small batches and a linger keep events queued and in flight at the moment of the kill.
    const environment = { DATABASE_URL: db.url, DATA_DIR: dataDir, PORT: String(port), BATCH_MAX_WAIT_MS: '50', BATCH_MAX_SIZE: '64' };
    let server = await startServerProcess(environment);
    let retries = 0;
    const client = new AuditClient({
      url: server.origin,
      maxBatchSize: 50,
      maxWaitMs: 5,
      concurrency: 4,
      capacity: 500,
      whenFull: 'wait',
      fullWaitMs: 60_000,
      retry: { initialDelayMs: 20, maxDelayMs: 250 },
      onRetry: () => (retries += 1),
    });
    const total = 4000;
    let answered = 0;
    const results: Promise<RecordResult>[] = [];
    // The stream: one producer recording as fast as the buffer lets it (whenFull 'wait').
    const producer = (async () => {
      for (let i = 0; i < total; i += 1) {
        const result = client.record({ tenant: 'sdk-crash', occurred_at: '2026-12-03T05:00:00.000Z', action: 'crash.test', actor: { id: `user:${i}` }, metadata: { n: i } });
        results.push(result);
        void result.then(() => (answered += 1));
        if (i % 50 === 49) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    })();
    try {
      await waitFor(() => answered >= total / 4, 60_000, 'a quarter of the events answered');
      server.child.kill('SIGKILL');
      await server.exited;
      const answeredAtKill = answered;
      t.diagnostic(`SIGKILL after ${answeredAtKill} of ${total} events answered`);
      assert.ok(answeredAtKill < total, 'the kill landed mid-stream');
      server = await startServerProcess(environment);
      await producer;
      const settled = await Promise.all(results);
      await client.close();
      const statuses = new Map<string, number>();
      for (const result of settled) statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
      assert.deepEqual([...statuses], [['accepted', total]], 'every event acknowledged in the end');
      assert.ok(retries > 0, 'the client retried through the outage');
      t.diagnostic(`${retries} retries`);
      const ids = settled.map((result) => result.id);
      assert.equal(new Set(ids).size, total);
      // Acknowledged = fsynced in the write-ahead log: stored once the batches commit.
      await waitFor(async () => (await db.count("tenant = 'sdk-crash'")) >= total, 60_000, 'every event stored');
      const stored = await db.pool.query<{ id: string; n: string }>("SELECT id, count(*) AS n FROM events WHERE tenant = 'sdk-crash' GROUP BY id");
      assert.equal(stored.rows.length, total, 'rows = events recorded');
      assert.ok(stored.rows.every((row) => row.n === '1'), 'each exactly once');
      assert.deepEqual(new Set(stored.rows.map((row) => row.id)), new Set(ids), 'the ids the client assigned');
      assert.equal(await db.count("tenant = 'sdk-crash'"), total);
    } finally {
      await client.close({ deadlineMs: 1000 });
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
