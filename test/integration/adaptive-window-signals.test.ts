import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Sink } from '../../src/sink/sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { sqlError } from '../helpers/scripted-sink.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/** The COPY sink, failing its first `failures` attempts with `code`. */
function failingFirst(failures: number, code: string): (sink: Sink) => Sink {
  let left = failures;
  return (sink) => ({
    write: (batch, options) => {
      if (left > 0) {
        left -= 1;
        return Promise.reject(sqlError(code));
      }
      return sink.write(batch, options);
    },
  });
}

async function gauge(service: TestService, name: string): Promise<number> {
  return (await service.metrics.registry.getSingleMetric(name)!.get()).values[0]!.value;
}

async function decisions(service: TestService): Promise<Record<string, number>> {
  const metric = await service.metrics.registry.getSingleMetric('ingest_batch_window_decisions_total')!.get();
  return Object.fromEntries(metric.values.filter((sample) => sample.value > 0).map((sample) => [String(sample.labels.reason), sample.value]));
}

/** The real write path's failures reach the adaptive window: congestion shrinks it, poison does not. */
describe('BATCH_WINDOW=adaptive on the real write path', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  const environment = { BATCH_WINDOW: 'adaptive', BATCH_MAX_SIZE: '400', BATCH_MAX_WAIT_MS: '20', RETRY_BASE_DELAY_MS: '1', RETRY_MAX_DELAY_MS: '5' };

  it('halves the window once when retried attempts meet 53300 (too many connections), and still stores the event', async () => {
    // The service clock is fake and only moves for the batch timer: the three attempts fall in one
    // controller interval however slowly this machine runs the retries (real, 1–5 ms apart).
    const clock = createFakeClock();
    const service = await buildTestService(db.url, environment, { wrapBaseSink: failingFirst(3, '53300'), clock });
    try {
      assert.equal(await gauge(service, 'ingest_batch_window_size'), 400);
      const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'congested' }) });
      assert.equal(response.statusCode, 202);
      await clock.tickAsync(20); // BATCH_MAX_WAIT_MS: the batch leaves
      await waitFor(async () => (await db.count(`tenant = 'congested'`)) === 1, 10_000, 'the event to be stored after its retries');
      assert.equal((await decisions(service)).decrease_congestion, 1, 'three failed attempts of one episode: one decrease');
      assert.equal(await gauge(service, 'ingest_batch_window_size'), 200);
      assert.equal(await gauge(service, 'ingest_batch_window_wait_seconds'), 0.01);
    } finally {
      await service.close();
    }
  });

  it('does not move on a data error (23514): poison is not congestion', async () => {
    const service = await buildTestService(db.url, environment, { wrapBaseSink: failingFirst(1, '23514') });
    try {
      const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'poison' }) });
      assert.equal(response.statusCode, 202);
      await waitFor(async () => (await service.metrics.registry.getSingleMetric('ingest_events_dead_lettered_total')!.get()).values[0]!.value === 1, 10_000, 'the event to be dead-lettered');
      assert.equal((await decisions(service)).decrease_congestion, undefined);
      assert.equal(await gauge(service, 'ingest_batch_window_size'), 400);
    } finally {
      await service.close();
    }
  });
});
