import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

async function listen(service: TestService): Promise<string> {
  return service.app.listen({ host: '127.0.0.1', port: 0 });
}

/** POST events from `connections` concurrent workers until `total` are sent; returns each answer. */
async function sendConcurrently(
  origin: string,
  total: number,
  connections: number,
  makeBody: (index: number) => string,
): Promise<{ status: number; id?: string; retryAfter?: string }[]> {
  const client = new Pool(origin, { connections, pipelining: 1 });
  const answers: { status: number; id?: string; retryAfter?: string }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const index = next++;
      const response = await client.request({
        path: '/event',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: makeBody(index),
      });
      const body = (await response.body.json()) as { id?: string };
      const retryAfter = response.headers['retry-after'];
      answers.push({
        status: response.statusCode,
        ...(body.id ? { id: body.id } : {}),
        ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
      });
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await client.close();
  return answers;
}

describe('POST /event over HTTP, on a real PostgreSQL', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('answers every bad input with its 4xx problem document and stores none of them', async () => {
    const service = await buildTestService(db.url);
    const origin = await listen(service);
    const json = (value: unknown) => JSON.stringify(value);
    const cases: { name: string; body: string; contentType?: string; status: number; code: string }[] = [
      { name: 'malformed JSON', body: '{"tenant": "acme",', status: 400, code: 'INGEST_ERR_MALFORMED_JSON' },
      { name: 'empty body', body: '', status: 400, code: 'INGEST_ERR_MALFORMED_JSON' },
      { name: 'a JSON array', body: '[1,2]', status: 400, code: 'INGEST_ERR_VALIDATION' },
      { name: 'wrong types', body: json(sampleEvent({ action: 42, actor: 'x' })), status: 400, code: 'INGEST_ERR_VALIDATION' },
      { name: 'text/plain', body: json(sampleEvent()), contentType: 'text/plain', status: 415, code: 'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE' },
      { name: 'a form', body: 'a=b', contentType: 'application/x-www-form-urlencoded', status: 415, code: 'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE' },
      {
        name: 'a body over 64 KiB',
        body: json(sampleEvent({ user_agent: 'x'.repeat(70_000) })),
        status: 413,
        code: 'INGEST_ERR_BODY_TOO_LARGE',
      },
      { name: 'NUL in a string', body: json(sampleEvent({ action: 'a\u0000b' })), status: 400, code: 'INGEST_ERR_VALIDATION' },
      {
        name: 'a lone surrogate',
        body: '{"tenant":"acme","occurred_at":"2026-11-22T05:00:00Z","action":"a\\ud800b","actor":{"id":"u"}}',
        status: 400,
        code: 'INGEST_ERR_VALIDATION',
      },
      {
        name: 'NUL in metadata (jsonb rejects it)',
        body: json(sampleEvent({ metadata: { note: '\u0000' } })),
        status: 400,
        code: 'INGEST_ERR_VALIDATION',
      },
      {
        name: 'a timestamp PostgreSQL cannot store',
        body: json(sampleEvent({ occurred_at: '0000-12-31T23:59:59Z' })),
        status: 400,
        code: 'INGEST_ERR_VALIDATION',
      },
      { name: 'an invalid IP', body: json(sampleEvent({ source_ip: '10.0.0.256' })), status: 400, code: 'INGEST_ERR_VALIDATION' },
      {
        name: 'metadata nested too deep',
        body: json(sampleEvent({ metadata: { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } } })),
        status: 400,
        code: 'INGEST_ERR_VALIDATION',
      },
      {
        name: 'a top-level __proto__ key',
        body: json(sampleEvent()).replace(/^\{/, '{"__proto__":{"polluted":true},'),
        status: 400,
        code: 'INGEST_ERR_FORBIDDEN_KEY',
      },
      {
        name: 'a __proto__ key inside metadata',
        body: json(sampleEvent()).replace('"metadata":{', '"metadata":{"__proto__":{"x":1},'),
        status: 400,
        code: 'INGEST_ERR_FORBIDDEN_KEY',
      },
      { name: 'an unknown field', body: json(sampleEvent({ severity: 'high' })), status: 400, code: 'INGEST_ERR_VALIDATION' },
    ];
    try {
      for (const testCase of cases) {
        const response = await fetch(`${origin}/event`, {
          method: 'POST',
          headers: { 'content-type': testCase.contentType ?? 'application/json' },
          body: testCase.body,
        });
        const problem = (await response.json()) as { code: string; status: number; errors?: unknown[] };
        assert.equal(response.status, testCase.status, `${testCase.name}: status`);
        assert.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8', testCase.name);
        assert.equal(problem.code, testCase.code, `${testCase.name}: code`);
        assert.equal(problem.status, testCase.status);
        if (testCase.code === 'INGEST_ERR_VALIDATION') assert.ok(Array.isArray(problem.errors) && problem.errors.length > 0);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype was polluted');
      // A valid sentinel: once it is stored, everything sent before it has been through a flush.
      const sentinel = await fetch(`${origin}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: json(sampleEvent({ tenant: 'sentinel' })),
      });
      assert.equal(sentinel.status, 202);
      await waitFor(async () => (await db.count("tenant = 'sentinel'")) === 1, 5000, 'the sentinel row');
      assert.equal(await db.count(), 1, 'no bad input produced a row');
    } finally {
      await service.close();
      await db.pool.query('TRUNCATE events');
    }
  });

  it('reports every field that is wrong, by path', async () => {
    const service = await buildTestService(db.url);
    try {
      const response = await service.app.inject({
        method: 'POST',
        url: '/event',
        payload: { tenant: '', occurred_at: 'yesterday', action: 'x', actor: { id: '' }, outcome: 'meh' },
      });
      assert.equal(response.statusCode, 400);
      const paths = response.json<{ errors: { path: string }[] }>().errors.map((e) => e.path).sort();
      assert.deepEqual(paths, ['actor.id', 'occurred_at', 'outcome', 'tenant']);
    } finally {
      await service.close();
    }
  });

  it('stores exactly 50,000 events sent over 64 concurrent connections', async () => {
    const service = await buildTestService(db.url);
    const origin = await listen(service);
    try {
      const answers = await sendConcurrently(origin, 50_000, 64, (i) => JSON.stringify(sampleEvent({ tenant: 'load', metadata: { i } })));
      const accepted = answers.filter((a) => a.status === 202);
      assert.equal(accepted.length, 50_000, `statuses: ${JSON.stringify(countBy(answers.map((a) => a.status)))}`);
      await waitFor(async () => (await db.count("tenant = 'load'")) === 50_000, 30_000, '50,000 rows');
      const ids = new Set(accepted.map((a) => a.id));
      assert.equal(ids.size, 50_000);
      const stored = await db.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'load'");
      assert.ok(stored.rows.every((row) => ids.has(row.id)), 'every row is one that was acknowledged');
    } finally {
      await service.close();
    }
  });

  it('stores a re-sent event once, and answers 202 both times', async () => {
    const service = await buildTestService(db.url);
    try {
      const event = sampleEvent({ id: randomUUID(), tenant: 'resend' });
      for (let i = 0; i < 3; i += 1) {
        const response = await service.app.inject({ method: 'POST', url: '/event', payload: event });
        assert.equal(response.statusCode, 202);
        assert.deepEqual(response.json(), { id: event.id });
      }
      await waitFor(() => service.pipeline.depth === 0, 5000, 'the queue to drain');
      assert.equal(await db.count("tenant = 'resend'"), 1);
      const metrics = await service.metrics.registry.getSingleMetricAsString('ingest_events_duplicate_total');
      assert.match(metrics, /ingest_events_duplicate_total 2/);
    } finally {
      await service.close();
    }
  });

  it('with ACK_MODE=committed, answers 201 only once the row is committed', async () => {
    const service = await buildTestService(db.url, { ACK_MODE: 'committed' });
    try {
      const event = sampleEvent({ id: randomUUID(), tenant: 'committed' });
      const response = await service.app.inject({ method: 'POST', url: '/event', payload: event });
      assert.equal(response.statusCode, 201);
      assert.equal(await db.count(`id = '${String(event.id)}'`), 1, 'the row exists when the 201 arrives');
    } finally {
      await service.close();
    }
  });

  it('sheds with 429 and Retry-After while the table is locked, stays bounded, then stores every accepted event', async () => {
    const service = await buildTestService(db.url, { QUEUE_CAPACITY: '200', BATCH_MAX_SIZE: '50', FLUSH_CONCURRENCY: '2' });
    const origin = await listen(service);
    const locker = await db.pool.connect();
    let maxDepth = 0;
    const depthProbe = setInterval(() => {
      maxDepth = Math.max(maxDepth, service.pipeline.depth);
    }, 5);
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
      const rssBefore = process.memoryUsage().rss;
      const answers = await sendConcurrently(origin, 2_000, 32, (i) => JSON.stringify(sampleEvent({ tenant: 'stalled', metadata: { i } })));
      const rssGrowthMiB = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
      const statuses = countBy(answers.map((a) => a.status));
      assert.ok((statuses[429] ?? 0) > 0, `expected 429s, got ${JSON.stringify(statuses)}`);
      assert.deepEqual(Object.keys(statuses).sort(), ['202', '429'], `only 202 and 429, got ${JSON.stringify(statuses)}`);
      for (const answer of answers.filter((a) => a.status === 429)) {
        assert.match(answer.retryAfter ?? '', /^[1-9][0-9]*$/, 'Retry-After is a positive number of seconds');
      }
      const accepted = answers.filter((a) => a.status === 202);
      // Nothing settles while the table is locked, so queue + flush slots hold exactly what was
      // accepted. Two batches of 50 are being written (out of the queue); the queue fills at least
      // up to the 80 % high-water mark (shedding did not start early), never past it by more than
      // the requests already admitted when it was crossed, and within capacity.
      assert.equal(service.pipeline.depth, accepted.length, 'every 202 is in the queue or being written; nothing else is');
      const queued = service.pipeline.queuedDepth;
      const inFlight = accepted.length - queued;
      assert.ok(inFlight > 0 && inFlight <= 100, `${inFlight} in flight: at most two batches of 50`);
      assert.ok(queued >= 160 && queued <= 200, `${queued} queued before shedding (high water 160, capacity 200)`);
      assert.equal(maxDepth, accepted.length, 'the depth only grew while locked');
      assert.ok(rssGrowthMiB < 100, `RSS grew ${rssGrowthMiB.toFixed(1)} MiB`);
      await locker.query('ROLLBACK');
      await waitFor(async () => (await db.count("tenant = 'stalled'")) === accepted.length, 20_000, 'every accepted event');
      const stored = await db.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'stalled'");
      assert.deepEqual(new Set(stored.rows.map((r) => r.id)), new Set(accepted.map((a) => a.id)));
    } finally {
      clearInterval(depthProbe);
      locker.release();
      await service.close();
    }
  });

  it('serves /healthz, /readyz and /metrics with help text for every ingest metric', async () => {
    const service = await buildTestService(db.url);
    try {
      assert.equal((await service.app.inject('/healthz')).statusCode, 200);
      const ready = await service.app.inject('/readyz');
      assert.equal(ready.statusCode, 200);
      const metrics = (await service.app.inject('/metrics')).body;
      for (const name of [
        'ingest_batch_size',
        'ingest_batch_bytes',
        'ingest_flush_duration_seconds',
        'ingest_flushes_total',
        'ingest_queue_depth',
        'ingest_queue_capacity',
        'ingest_batch_latency_seconds',
        'ingest_events_accepted_total',
        'ingest_events_stored_total',
        'ingest_events_failed_total',
        'ingest_events_dropped_total',
        'ingest_http_responses_total',
        'ingest_events_duplicate_total',
        'ingest_events_dead_lettered_total',
        'ingest_retries_total',
        'ingest_poison_splits_total',
        'ingest_breaker_state',
        'ingest_breaker_transitions_total',
        'ingest_dlq_write_errors_total',
        'ingest_tenant_queue_depth',
        'ingest_shed_total',
        'ingest_copy_bytes_total',
        'ingest_db_pool_connections',
        'ingest_db_pool_waiting',
        'ingest_build_info',
        'nodejs_eventloop_lag_p99_seconds',
        'process_cpu_seconds_total',
      ]) {
        assert.match(metrics, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has help text`);
      }
      service.pipeline.beginDrain();
      const draining = await service.app.inject('/readyz');
      assert.equal(draining.statusCode, 503);
      const refused = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent() });
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.json<{ code: string }>().code, 'INGEST_ERR_DRAINING');
      assert.ok(refused.headers['retry-after']);
      const after = (await service.app.inject('/metrics')).body;
      assert.match(after, /^ingest_shed_total\{reason="draining"\} 1$/m);
      assert.match(after, /^ingest_db_pool_connections\{state="idle"\} \d+$/m);
    } finally {
      await service.close();
    }
  });
});

function countBy(values: number[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}
