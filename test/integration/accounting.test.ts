import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { countDeadLetters } from '../../src/dlq/dlq-files.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { sqlError } from '../helpers/scripted-sink.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

/** Every third write fails as a serialization failure before it reaches the database. */
function injectTransientFailures(inner: Sink): Sink & { injected: number } {
  let calls = 0;
  const sink = {
    injected: 0,
    async write(batch: Parameters<Sink['write']>[0], options: Parameters<Sink['write']>[1]) {
      calls += 1;
      if (calls % 3 === 0) {
        sink.injected += 1;
        throw sqlError('40001', 'could not serialize access due to concurrent update (injected)');
      }
      return inner.write(batch, options);
    },
  };
  return sink;
}

function metricValue(text: string, name: string): number {
  const match = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

describe('accounting', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-accounting-'));
    await db.pool.query("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (action <> 'poison')");
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  for (const mode of ['wal', 'memory'] as const) it(`DURABILITY=${mode}: every accepted event ends stored, duplicate, dead-lettered or kept (${mode === 'wal' ? 'left in the log' : 'spilled'}), and the table agrees`, async () => {
    await db.pool.query("DELETE FROM events WHERE tenant = 'ledger'");
    await rm(dataDir, { recursive: true, force: true });
    let faults: (Sink & { injected: number }) | undefined;
    const service = await buildTestService(
      db.url,
      { DURABILITY: mode, BATCH_MAX_SIZE: '40', RETRY_BASE_DELAY_MS: '1', RETRY_MAX_DELAY_MS: '20', DB_STATEMENT_TIMEOUT_MS: '60000', DB_COPY_TIMEOUT_MS: '60000' },
      { dataDir, wrapBaseSink: (sink) => (faults = injectTransientFailures(sink)) },
    );
    const post = (body: Record<string, unknown>) => service.app.inject({ method: 'POST', url: '/event', payload: body });
    const resend: Record<string, unknown>[] = [];
    let accepted = 0;
    for (let i = 0; i < 600; i += 1) {
      const event = sampleEvent({ id: randomUUID(), tenant: 'ledger', action: i % 37 === 0 ? 'poison' : 'document.update' });
      if (i % 10 === 0) resend.push(event);
      if ((await post(event)).statusCode === 202) accepted += 1;
    }
    const settledOrExplain = async (what: string) => {
      try {
        await waitFor(() => service.pipeline.depth === 0, 60_000, what);
      } catch (error) {
        const metrics = await service.metrics.registry.metrics();
        const lines = metrics.split('\n').filter((line) => /^ingest_(retries|breaker_state|events_|queue_depth|flushes|poison|dlq)/.test(line));
        throw new Error(`${(error as Error).message}; depth ${service.pipeline.depth}, breaker ${service.chain.breaker.state}, DLQ healthy ${service.deadLetterQueue.healthy}\n${lines.join('\n')}`);
      }
    };
    await settledOrExplain('the first wave to settle');
    for (const event of resend) if ((await post(event)).statusCode === 202) accepted += 1;
    await settledOrExplain('the re-sends to settle');

    // A last wave meets a locked table and a short drain deadline: it is spilled.
    const locker = await db.pool.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    for (let i = 0; i < 30; i += 1) if ((await post(sampleEvent({ id: randomUUID(), tenant: 'ledger' }))).statusCode === 202) accepted += 1;
    const metricsText = async () => service.metrics.registry.metrics();
    let text = '';
    let spilled = 0;
    try {
      const report = await service.close(300);
      spilled = report.unstored;
      assert.equal(report.keptIn, mode === 'wal' ? 'wal' : 'spill');
      text = await metricsText();
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }

    const acceptedMetric = metricValue(text, 'ingest_events_accepted_total');
    const stored = metricValue(text, 'ingest_events_stored_total');
    const duplicate = metricValue(text, 'ingest_events_duplicate_total');
    const deadLettered = metricValue(text, 'ingest_events_dead_lettered_total');
    const failed = metricValue(text, 'ingest_events_failed_total');
    assert.ok(faults && faults.injected > 0, 'transient failures were injected');
    assert.ok((metricValue(text, 'ingest_retries_total')) >= faults.injected);
    assert.equal(acceptedMetric, accepted);
    assert.equal(accepted, 600 + resend.length + 30);
    assert.equal(spilled, 30);
    assert.equal(failed, 0);
    assert.equal(deadLettered, 17 + 2, 'events 0, 37, …, 592 are poison, and two of them (0, 370) were re-sent');
    assert.equal(duplicate, resend.length - 2, 'the re-sends, but for the two poison ones (dead-lettered again)');
    assert.equal(acceptedMetric, stored + duplicate + deadLettered + spilled, 'accepted = stored + duplicate + dead-lettered + spilled');
    assert.equal((await countDeadLetters(path.join(dataDir, 'dlq'))).records, deadLettered, 'the DLQ holds the dead-lettered');

    // The next start re-ingests the spill file or replays the log before it takes traffic. The
    // write abandoned at the deadline may have committed after all (its COMMIT was already sent):
    // those come back as duplicates. The log replays whole segments, so it may bring back more
    // than the 30 (already stored ones, as duplicates); the spill file holds exactly the 30.
    const restarted = await buildTestService(db.url, { DURABILITY: mode }, { dataDir });
    try {
      await waitFor(() => restarted.pipeline.depth === 0, 10_000, 'what was kept to be stored');
    } finally {
      await restarted.close();
    }
    const after = await restarted.metrics.registry.metrics();
    const storedAfter = metricValue(after, 'ingest_events_stored_total');
    const duplicateAfter = metricValue(after, 'ingest_events_duplicate_total');
    if (mode === 'memory') assert.equal(storedAfter + duplicateAfter, 30);
    else assert.ok(storedAfter + duplicateAfter >= 30, `replayed ${storedAfter + duplicateAfter}`);
    assert.ok(storedAfter <= 30, 'nothing but the kept events is newly stored');
    assert.equal(await db.count("tenant = 'ledger'"), stored + spilled, 'the table holds the stored events and every spilled one, once');
    const ids = await db.pool.query<{ n: string }>("SELECT count(DISTINCT id) AS n FROM events WHERE tenant = 'ledger'");
    assert.equal(Number(ids.rows[0]!.n), stored + spilled, 'no id stored twice');
  });
});
