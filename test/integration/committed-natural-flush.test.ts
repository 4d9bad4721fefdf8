import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/** ingest_flushes_total by reason, read from the service's own registry. */
async function flushesByReason(service: TestService): Promise<Record<string, number>> {
  const metric = await service.metrics.registry.getSingleMetric('ingest_flushes_total')!.get();
  return Object.fromEntries(metric.values.filter((sample) => sample.value > 0).map((sample) => [String(sample.labels.reason), sample.value]));
}

/**
 * ACK_MODE=committed with BATCH_FLUSH=natural (its default there): a 201 waits for one write, not
 * for the linger timer. The service runs on a fake clock that the test never moves unless it says
 * so, so a batch that waited for BATCH_MAX_WAIT_MS would never leave.
 */
describe('ACK_MODE=committed flushes naturally', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('answers a trickle of events 201 one write each, without the 200 ms timer ever firing', async () => {
    const clock = createFakeClock();
    const service = await buildTestService(db.url, { ACK_MODE: 'committed', BATCH_MAX_WAIT_MS: '200' }, { clock });
    try {
      assert.equal(service.config.batch.flushPolicy, 'natural', 'the default with ACK_MODE=committed');
      for (let i = 0; i < 5; i += 1) {
        const event = sampleEvent({ id: randomUUID(), tenant: 'trickle' });
        const response = await service.app.inject({ method: 'POST', url: '/event', payload: event });
        assert.equal(response.statusCode, 201);
        assert.equal(await db.count(`id = '${String(event.id)}'`), 1, 'committed before the 201');
      }
      assert.deepEqual(await flushesByReason(service), { natural: 5 }, 'one natural flush per event, none on the timer');
    } finally {
      await service.close();
    }
  });

  it('lets batches grow while a write runs: 64 concurrent events take far fewer than 64 flushes', async () => {
    const service = await buildTestService(db.url, { ACK_MODE: 'committed', BATCH_MAX_WAIT_MS: '200' });
    try {
      const answers = await Promise.all(
        Array.from({ length: 64 }, () => service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'burst' }) })),
      );
      assert.ok(answers.every((answer) => answer.statusCode === 201));
      const flushes = await flushesByReason(service);
      assert.equal(flushes.time, undefined, 'no batch waited for the timer');
      assert.ok((flushes.natural ?? 0) < 32, `64 events in ${flushes.natural} natural flushes`);
      assert.equal(await db.count(`tenant = 'burst'`), 64);
    } finally {
      await service.close();
    }
  });

  it('with BATCH_FLUSH=window, the same 201 waits for the timer (the contrast)', async () => {
    const clock = createFakeClock();
    const service = await buildTestService(db.url, { ACK_MODE: 'committed', BATCH_FLUSH: 'window', BATCH_MAX_WAIT_MS: '200' }, { clock });
    try {
      const answer = service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'window' }) });
      await waitFor(() => service.pipeline.depth === 1, 10_000, 'the event to reach the batcher');
      await clock.tickAsync(199);
      assert.deepEqual(await flushesByReason(service), {}, 'nothing flushed before the 200 ms window');
      await clock.tickAsync(1);
      assert.equal((await answer).statusCode, 201);
      assert.deepEqual(await flushesByReason(service), { time: 1 });
    } finally {
      await service.close();
    }
  });
});
