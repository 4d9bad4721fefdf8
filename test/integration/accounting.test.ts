import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { countDeadLetters } from '../../src/dlq/dlq-files.ts';
import { recoverSpill } from '../../src/spill/recover-spill.ts';
import { writeSpillFile } from '../../src/spill/spill-file.ts';
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

  it('every accepted event ends stored, duplicate, dead-lettered or spilled, and the table agrees', async () => {
    let faults: (Sink & { injected: number }) | undefined;
    const service = buildTestService(
      db.url,
      { BATCH_MAX_SIZE: '40', RETRY_BASE_DELAY_MS: '1', RETRY_MAX_DELAY_MS: '20', DB_STATEMENT_TIMEOUT_MS: '60000', DB_COPY_TIMEOUT_MS: '60000' },
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
        await waitFor(() => service.pipeline.batcher.depth === 0, 60_000, what);
      } catch (error) {
        const metrics = await service.metrics.registry.metrics();
        const lines = metrics.split('\n').filter((line) => /^ingest_(retries|breaker_state|events_|queue_depth|flushes|poison|dlq)/.test(line));
        throw new Error(`${(error as Error).message}; depth ${service.pipeline.batcher.depth}, breaker ${service.chain.breaker.state}, DLQ healthy ${service.deadLetterQueue.healthy}\n${lines.join('\n')}`);
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
      const unstored = await service.close(300);
      spilled = unstored.length;
      await writeSpillFile(dataDir, unstored, Date.now());
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

    // The next start re-ingests the spill file. The write abandoned at the deadline may have
    // committed after all (its COMMIT was already sent): those come back as duplicates.
    const restarted = buildTestService(db.url, {}, { dataDir });
    try {
      assert.equal(await recoverSpill(dataDir, restarted.pipeline, pino({ level: 'silent' })), 30);
      await waitFor(() => restarted.pipeline.batcher.depth === 0, 10_000, 'the spill to be re-ingested');
    } finally {
      await restarted.close();
    }
    const after = await restarted.metrics.registry.metrics();
    const storedAfter = metricValue(after, 'ingest_events_stored_total');
    const duplicateAfter = metricValue(after, 'ingest_events_duplicate_total');
    assert.equal(storedAfter + duplicateAfter, 30);
    assert.equal(await db.count("tenant = 'ledger'"), stored + spilled, 'the table holds the stored events and every spilled one, once');
    const ids = await db.pool.query<{ n: string }>("SELECT count(DISTINCT id) AS n FROM events WHERE tenant = 'ledger'");
    assert.equal(Number(ids.rows[0]!.n), stored + spilled, 'no id stored twice');
  });
});
