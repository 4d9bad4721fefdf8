/**
 * The request-duration histogram is observed for every response (app.ts's onResponse hook), by
 * route and status class, and the oldest-unsettled-event gauge is on /metrics.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

describe('HTTP request metrics', () => {
  let database: TestDatabase;
  let service: TestService;
  before(async () => {
    database = await createTestDatabase();
    service = await buildTestService(database.url);
  });
  after(async () => {
    await service.close();
    await database.drop();
  });

  it('observes ingest_http_request_duration_seconds for each answer, by route and status class', async () => {
    const accepted = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent() });
    assert.equal(accepted.statusCode, 202);
    const refused = await service.app.inject({ method: 'POST', url: '/event', payload: { tenant: 'acme' } });
    assert.equal(refused.statusCode, 400);
    const metrics = (await service.app.inject('/metrics')).body;
    assert.match(metrics, /^ingest_http_request_duration_seconds_count\{route="\/event",status_class="2xx"\} 1$/m);
    assert.match(metrics, /^ingest_http_request_duration_seconds_count\{route="\/event",status_class="4xx"\} 1$/m);
    assert.match(metrics, /^ingest_http_request_duration_seconds_bucket\{le="10",route="\/event",status_class="2xx"\} 1$/m);
    assert.match(metrics, /^ingest_oldest_unsettled_event_age_seconds \d/m);
  });
});

describe('ingest_oldest_unsettled_event_age_seconds on a running service', () => {
  let database: TestDatabase;
  let service: TestService;
  let release: () => void = () => {};
  let held = true;
  before(async () => {
    database = await createTestDatabase();
    service = await buildTestService(database.url, {}, {
      // The database "hangs" until the test releases it: the event stays unsettled meanwhile.
      wrapBaseSink: (sink) => ({
        async write(batch, options) {
          if (held) await new Promise<void>((resolve) => (release = resolve));
          return sink.write(batch, options);
        },
      }),
    });
  });
  after(async () => {
    held = false;
    release();
    await service.close();
    await database.drop();
  });

  const age = async () => {
    const metrics = (await service.app.inject('/metrics')).body;
    return Number(/^ingest_oldest_unsettled_event_age_seconds (\S+)$/m.exec(metrics)?.[1]);
  };

  it('grows while an accepted event waits for the database, and is 0 once it is stored', async () => {
    assert.equal(await age(), 0);
    assert.equal((await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent() })).statusCode, 202);
    await waitFor(async () => (await age()) > 0.05, 10_000, 'the age to grow');
    const first = await age();
    await waitFor(async () => (await age()) > first, 10_000, 'the age to keep growing');
    held = false;
    release();
    await waitFor(async () => (await age()) === 0, 10_000, 'the age to drop to 0 once stored');
  });
});
