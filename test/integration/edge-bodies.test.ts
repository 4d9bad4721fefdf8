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

describe('bodies that are not UTF-8', () => {
  let db: TestDatabase;
  let service: Awaited<ReturnType<typeof buildTestService>>;
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url);
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  /** An event body whose action holds `bytes` raw: invalid UTF-8 unless the bytes are. */
  const withBytes = (bytes: number[], tenant: string) => {
    const [before, after] = json(sampleEvent({ tenant, action: '@B@' })).split('@B@') as [string, string];
    return Buffer.concat([Buffer.from(before), Buffer.from(bytes), Buffer.from(after)]);
  };
  const INVALID: readonly (readonly [string, number[]])[] = [
    ['a stray FF byte', [0x61, 0xff, 0x62]],
    ['a truncated two-byte form (C3 then ASCII)', [0xc3, 0x61]],
    ['a two-byte form truncated by the string end (C3")', [0xc3]],
    ['an overlong NUL (C0 80)', [0xc0, 0x80]],
    ['an overlong slash (E0 80 AF)', [0xe0, 0x80, 0xaf]],
    ['CESU-8 surrogates (ED A0 BD ED B8 80)', [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80]],
    ['a 5-byte form (F8 88 80 80 80)', [0xf8, 0x88, 0x80, 0x80, 0x80]],
    ['a code point above U+10FFFF (F4 90 80 80)', [0xf4, 0x90, 0x80, 0x80]],
    ['a lone continuation byte (80)', [0x80]],
  ];

  for (const [name, bytes] of INVALID) {
    it(`refuses ${name} with 400 INGEST_ERR_BAD_UTF8 on /event and /events, plain and gzipped`, async () => {
      const body = withBytes(bytes, 'utf8-bad');
      const posts = [
        { url: '/event', type: 'application/json', payload: body },
        { url: '/events', type: 'application/json', payload: Buffer.concat([Buffer.from('['), body, Buffer.from(']')]) },
        { url: '/events', type: 'application/x-ndjson', payload: Buffer.concat([Buffer.from(`${json(sampleEvent({ tenant: 'utf8-bad' }))}\n`), body]) },
      ];
      for (const { url, type, payload } of posts) {
        for (const gzip of [false, true]) {
          const response = await service.app.inject({
            method: 'POST',
            url,
            headers: { 'content-type': type, ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
            payload: gzip ? gzipSync(payload) : payload,
          });
          assert.equal(response.statusCode, 400, `${url} ${type} gzip=${gzip}: ${response.body}`);
          assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
          assert.equal(response.json<{ code: string }>().code, 'INGEST_ERR_BAD_UTF8');
        }
      }
    });
  }

  it('accepts well-formed multi-byte UTF-8 and stores it as sent', async () => {
    const text = 'é€😀\u{10FFFF}';
    const response = await service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': 'application/json' }, payload: withBytes([...Buffer.from(text)], 'utf8-good') });
    assert.equal(response.statusCode, 202, response.body);
    await waitFor(async () => (await db.count("tenant = 'utf8-good'")) === 1, 5000, 'the good event');
    const { rows } = await db.pool.query<{ action: string }>("SELECT action FROM events WHERE tenant = 'utf8-good'");
    assert.equal(rows[0]!.action, text);
  });

  it('refuses a charset other than UTF-8 with 415, and takes utf-8 in any case or none', async () => {
    for (const [url, type] of [
      ['/event', 'application/json; charset=iso-8859-1'],
      ['/event', 'application/json;charset="latin1"'],
      ['/events', 'application/json; charset=utf-16'],
      ['/events', 'application/x-ndjson; charset=windows-1252'],
    ] as const) {
      const payload = url === '/event' ? json(sampleEvent({ tenant: 'charset-bad' })) : type.includes('ndjson') ? json(sampleEvent({ tenant: 'charset-bad' })) : json([sampleEvent({ tenant: 'charset-bad' })]);
      const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': type }, payload });
      assert.equal(response.statusCode, 415, `${type}: ${response.body}`);
      assert.equal(response.json<{ code: string }>().code, 'INGEST_ERR_UNSUPPORTED_CHARSET');
    }
    for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json; charset="utf-8"']) {
      const response = await service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': type }, payload: json(sampleEvent({ tenant: 'charset-good' })) });
      assert.equal(response.statusCode, 202, `${type}: ${response.body}`);
    }
    await waitFor(async () => (await db.count("tenant = 'charset-good'")) === 4, 5000, 'the utf-8 events');
    assert.equal(await db.count("tenant IN ('charset-bad', 'utf8-bad')"), 0);
  });
});

describe('query strings', () => {
  let db: TestDatabase;
  let service: Awaited<ReturnType<typeof buildTestService>>;
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url);
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  const mixed = () => [sampleEvent({ tenant: 'query' }), { tenant: 'query' }];

  it('refuses ?atomic= other than exactly true or false, repeated, or unknown parameters, with 400 INGEST_ERR_BAD_QUERY', async () => {
    for (const query of ['atomic=1', 'atomic=TRUE', 'atomic=yes', 'atomic=', 'atomic', 'atomic=true&atomic=true', 'atomic=true&atomic=false', 'atomic=false&atomic=true', 'atomc=true', 'atomic=true&dry_run=1']) {
      const response = await service.app.inject({ method: 'POST', url: `/events?${query}`, payload: mixed() });
      assert.equal(response.statusCode, 400, `?${query}: ${response.body}`);
      const problem = response.json<{ code: string; errors: { path: string }[] }>();
      assert.equal(problem.code, 'INGEST_ERR_BAD_QUERY', `?${query}`);
      assert.ok(problem.errors.every((issue) => issue.path.startsWith('(query)')), `?${query}: ${response.body}`);
    }
    const single = await service.app.inject({ method: 'POST', url: '/event?atomic=true', payload: sampleEvent({ tenant: 'query' }) });
    assert.equal(single.statusCode, 400);
    assert.equal(single.json<{ code: string }>().code, 'INGEST_ERR_BAD_QUERY');
    assert.equal(await db.count("tenant = 'query'"), 0);
  });

  it('honours ?atomic=true and ?atomic=false', async () => {
    const atomic = await service.app.inject({ method: 'POST', url: '/events?atomic=true', payload: mixed() });
    assert.equal(atomic.statusCode, 400);
    assert.equal(atomic.json<{ code: string }>().code, 'INGEST_ERR_VALIDATION');
    const partial = await service.app.inject({ method: 'POST', url: '/events?atomic=false', payload: mixed() });
    assert.equal(partial.statusCode, 202);
    const plain = await service.app.inject({ method: 'POST', url: '/events', payload: mixed() });
    assert.equal(plain.statusCode, 202);
    await waitFor(async () => (await db.count("tenant = 'query'")) === 2, 5000, 'the two partial bulks');
  });
});
