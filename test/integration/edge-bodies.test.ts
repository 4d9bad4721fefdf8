import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

const json = (value: unknown) => JSON.stringify(value);

describe('compressed request bodies', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('accepts gzip, deflate and br; refuses an unknown encoding with 415 and a corrupt stream with 400', async () => {
    const service = await buildTestService(db.url);
    try {
      const post = (payload: Buffer | string, encoding: string) =>
        service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, payload });
      for (const [encoding, compress] of [
        ['gzip', gzipSync],
        ['deflate', deflateSync],
        ['br', brotliCompressSync],
      ] as const) {
        const response = await post(compress(json(sampleEvent({ tenant: `enc-${encoding}` }))), encoding);
        assert.equal(response.statusCode, 202, `${encoding}: ${response.body}`);
      }
      const unknown = await post('abc', 'compress');
      assert.equal(unknown.statusCode, 415);
      assert.equal(unknown.json<{ code: string }>().code, 'INGEST_ERR_UNSUPPORTED_ENCODING');
      const truncated = await post(gzipSync(json(sampleEvent({ tenant: 'enc-bad' }))).subarray(0, 25), 'gzip');
      assert.equal(truncated.statusCode, 400);
      assert.equal(truncated.json<{ code: string }>().code, 'INGEST_ERR_BAD_ENCODING');
      const garbage = await post(Buffer.from('definitely not gzip'), 'gzip');
      assert.equal(garbage.statusCode, 400);
      // The limit is on decompressed bytes: 70 KiB of event in a ~1 KiB gzip body is still a 413.
      const expands = await post(gzipSync(json(sampleEvent({ tenant: 'enc-big', user_agent: 'a'.repeat(70_000) }))), 'gzip');
      assert.equal(expands.statusCode, 413);
      await waitFor(async () => (await db.count("tenant LIKE 'enc-%'")) === 3, 5000, 'the three good events');
      assert.equal(await db.count("tenant IN ('enc-bad', 'enc-big')"), 0);
    } finally {
      await service.close();
    }
  });
});

describe('POST /events (bulk)', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('validates each NDJSON line on its own: valid lines are queued, bad ones reported by index', async () => {
    const service = await buildTestService(db.url);
    try {
      const lines = [json(sampleEvent({ tenant: 'bulk' })), json({ tenant: 'bulk' }), '{not json', '', json(sampleEvent({ tenant: 'bulk' }))];
      const response = await service.app.inject({
        method: 'POST',
        url: '/events',
        headers: { 'content-type': 'application/x-ndjson' },
        payload: lines.join('\r\n'),
      });
      assert.equal(response.statusCode, 202);
      const body = response.json<{ accepted: { index: number; id: string }[]; rejected: { index: number; errors: { path: string }[] }[] }>();
      assert.deepEqual(body.accepted.map((a) => a.index), [0, 3]);
      assert.deepEqual(body.rejected.map((r) => r.index), [1, 2]);
      assert.ok(body.rejected[0]!.errors.some((e) => e.path === 'occurred_at'));
      assert.equal(body.rejected[1]!.errors[0]!.path, '(line)');
      await waitFor(async () => (await db.count("tenant = 'bulk'")) === 2, 5000, 'the two valid events');
    } finally {
      await service.close();
    }
  });

  it('refuses the whole request with ?atomic=true when one line is bad, and accepts a JSON array', async () => {
    const service = await buildTestService(db.url);
    try {
      const atomic = await service.app.inject({
        method: 'POST',
        url: '/events?atomic=true',
        payload: [sampleEvent({ tenant: 'atomic' }), { tenant: 'atomic' }],
      });
      assert.equal(atomic.statusCode, 400);
      assert.ok(atomic.json<{ errors: { path: string }[] }>().errors.every((e) => e.path.startsWith('[1].')));
      const array = await service.app.inject({ method: 'POST', url: '/events', payload: [sampleEvent({ tenant: 'array' }), sampleEvent({ tenant: 'array' })] });
      assert.equal(array.statusCode, 202);
      await waitFor(async () => (await db.count("tenant = 'array'")) === 2, 5000, 'the array events');
      assert.equal(await db.count("tenant = 'atomic'"), 0);
    } finally {
      await service.close();
    }
  });

  it('refuses more than BULK_MAX_EVENTS with 413, and a bulk that does not fit below the high-water mark whole, with 429', async () => {
    const service = await buildTestService(db.url, { BULK_MAX_EVENTS: '50', QUEUE_CAPACITY: '100', BATCH_MAX_SIZE: '100', BATCH_MAX_WAIT_MS: '60000' });
    try {
      const many = Array.from({ length: 51 }, () => sampleEvent({ tenant: 'toomany' }));
      const tooMany = await service.app.inject({ method: 'POST', url: '/events', payload: many });
      assert.equal(tooMany.statusCode, 413);
      assert.equal(tooMany.json<{ code: string }>().code, 'INGEST_ERR_TOO_MANY_EVENTS');

      const first = await service.app.inject({ method: 'POST', url: '/events', payload: many.slice(0, 50) });
      assert.equal(first.statusCode, 202);
      assert.equal(service.pipeline.depth, 50, 'buffered: the 60 s linger holds them');
      const second = await service.app.inject({ method: 'POST', url: '/events', payload: many.slice(0, 40) });
      assert.equal(second.statusCode, 429, '50 + 40 would pass 80 of 100');
      assert.ok(second.headers['retry-after']);
      assert.equal(service.pipeline.depth, 50, 'nothing of the refused request was queued');
      const single = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'single' }) });
      assert.equal(single.statusCode, 202, 'a refused bulk does not turn shedding on for others');
    } finally {
      await service.close();
    }
  });

  it('fires the byte-size trigger with bulk events of widely varied sizes, never exceeding BATCH_MAX_BYTES', async () => {
    const maxBytes = 32 * 1024;
    const sizes: number[] = [];
    const service = await buildTestService(
      db.url,
      { BATCH_MAX_BYTES: String(maxBytes), BATCH_MAX_SIZE: '500' },
      {
        wrapBaseSink: (sink) => ({
          write: (batch, options) => {
            sizes.push(batch.reduce((sum, event) => sum + event.bytes, 0));
            return sink.write(batch, options);
          },
        }),
      },
    );
    try {
      const events = Array.from({ length: 300 }, (_, i) => sampleEvent({ tenant: 'bytes', metadata: { pad: 'x'.repeat((i * 7919) % 7000) } }));
      const lines = events.map((event) => json(event)).join('\n');
      const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: lines });
      assert.equal(response.statusCode, 202);
      await waitFor(async () => (await db.count("tenant = 'bytes'")) === 300, 10_000, 'all 300 events');
      const metrics = await service.metrics.registry.getSingleMetricAsString('ingest_flushes_total');
      assert.match(metrics, /ingest_flushes_total\{reason="bytes"\} [1-9]/);
      assert.ok(sizes.length > 10, `${sizes.length} batches`);
      assert.ok(Math.max(...sizes) <= maxBytes, `largest batch ${Math.max(...sizes)} bytes`);
    } finally {
      await service.close();
    }
  });
});
