/**
 * The request-duration histogram is observed for every response (app.ts's onResponse hook), by
 * route and status class, and the oldest-unsettled-event gauge is on /metrics.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, type TestService } from '../helpers/service.ts';

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
