import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/** A valid event, field by field: the fuzz mutates these. */
const validEvent = fc.record({
  tenant: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/),
  occurred_at: fc.date({ min: new Date('0001-01-02T00:00:00Z'), max: new Date('9999-12-30T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString()),
  action: fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }),
  actor: fc.record({ id: fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }), name: fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }) }, { requiredKeys: ['id'] }),
  metadata: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
  user_agent: fc.string({ minLength: 1, maxLength: 30, unit: 'binary' }),
}, { requiredKeys: ['tenant', 'occurred_at', 'action', 'actor'] });

/** Anything: a random JSON value, a valid event with one field replaced by anything, or raw bytes. */
const hostileBody = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
  fc.tuple(validEvent, fc.constantFrom('tenant', 'occurred_at', 'action', 'actor', 'metadata', 'source_ip', 'id', 'outcome', 'extra'), fc.jsonValue({ maxDepth: 3 }))
    .map(([event, key, value]) => JSON.stringify({ ...event, [key]: value })),
  validEvent.map((event) => JSON.stringify(event)),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
  validEvent.map((event) => JSON.stringify(event).replace(/"action":"/, '"action":"\\u0000')),
  validEvent.map((event) => JSON.stringify(event).replace(/"action":"/, '"action":"\\ud83d')),
);

describe('hostile input', () => {
  let db: TestDatabase;
  let service: TestService;
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url, { HTTP_HEADERS_TIMEOUT_MS: '500', HTTP_REQUEST_TIMEOUT_MS: '1000' });
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  it('never answers 5xx to random and mutated bodies, and stores what it acknowledged byte for byte', async () => {
    const acknowledged = new Map<string, Record<string, unknown>>();
    await fc.assert(
      fc.asyncProperty(hostileBody, fc.constantFrom('/event', '/events'), async (body, url) => {
        const payload = url === '/events' ? `[${body}]` : body;
        const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json' }, payload });
        assert.ok(response.statusCode < 500, `${response.statusCode} for ${payload.slice(0, 200)}: ${response.body}`);
        if (response.statusCode >= 400) {
          assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
          assert.equal(typeof response.json<{ code: string }>().code, 'string');
          return;
        }
        const sent = JSON.parse(body) as Record<string, unknown>;
        const ids = url === '/event' ? [response.json<{ id: string }>().id] : response.json<{ accepted: { id: string }[] }>().accepted.map((a) => a.id);
        for (const id of ids) acknowledged.set(id, sent);
      }),
      { numRuns: 400, seed: 20261122 },
    );
    assert.ok(acknowledged.size > 20, `${acknowledged.size} events were valid`);
    await waitFor(async () => (await db.count()) === acknowledged.size, 10_000, 'every acknowledged event');
    const { rows } = await db.pool.query<{ id: string; tenant: string; occurred_at: Date; action: string; actor_id: string; actor_name: string | null; user_agent: string | null; metadata: unknown }>(
      'SELECT id, tenant, occurred_at, action, actor_id, actor_name, user_agent, metadata FROM events',
    );
    for (const row of rows) {
      const sent = acknowledged.get(row.id) as { tenant: string; occurred_at: string; action: string; actor: { id: string; name?: string }; user_agent?: string; metadata?: unknown };
      assert.ok(sent, `stored ${row.id} was acknowledged`);
      assert.deepEqual(
        { tenant: row.tenant, occurred_at: row.occurred_at.toISOString(), action: row.action, actor_id: row.actor_id, actor_name: row.actor_name ?? undefined, user_agent: row.user_agent ?? undefined, metadata: row.metadata ?? undefined },
        { tenant: sent.tenant, occurred_at: sent.occurred_at, action: sent.action, actor_id: sent.actor.id, actor_name: sent.actor.name, user_agent: sent.user_agent, metadata: sent.metadata },
      );
    }
  });

  it('cuts off a slowloris client that never finishes its headers', async () => {
    const origin = new URL(await service.app.listen({ host: '127.0.0.1', port: 0 }));
    const socket = net.connect(Number(origin.port), '127.0.0.1');
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('connect', resolve));
    const startedAt = Date.now();
    socket.write('POST /event HTTP/1.1\r\nHost: x\r\n');
    const trickle = setInterval(() => socket.write('X-Slow: 1\r\n'), 100);
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    await new Promise((resolve) => socket.once('close', resolve));
    clearInterval(trickle);
    const heldMs = Date.now() - startedAt;
    assert.ok(heldMs < 5_000, `connection held ${heldMs} ms`);
    assert.match(answer, /^HTTP\/1\.1 408/);
    const fine = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'after-slowloris' }) });
    assert.equal(fine.statusCode, 202);
  });

  it('closes a connection that never sends a request, and keeps one that did', async () => {
    const address = service.app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : Number(new URL(await service.app.listen({ host: '127.0.0.1', port: 0 })).port);
    const silent = net.connect(port, '127.0.0.1');
    silent.on('error', () => {});
    const silentClosed = new Promise((resolve) => silent.once('close', resolve));
    // A keep-alive connection that sent one request: its first request cleared the timer.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = () =>
      new Promise<{ status: number; socket: net.Socket }>((resolve, reject) => {
        const request = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/event', agent, headers: { 'content-type': 'application/json' } }, (response) => {
          response.resume();
          response.on('end', () => resolve({ status: response.statusCode ?? 0, socket: request.socket! }));
        });
        request.on('error', reject);
        request.end(JSON.stringify(sampleEvent({ tenant: 'kept-alive' })));
      });
    const first = await post();
    assert.equal(first.status, 202);
    let keptAliveClosed = false;
    first.socket.once('close', () => (keptAliveClosed = true));
    await silentClosed; // HTTP_HEADERS_TIMEOUT_MS is 500 here; without the timer it would hang until the test's own timeout
    assert.equal(keptAliveClosed, false, 'the connection that sent a request is kept (keepAliveTimeout bounds it)');
    const second = await post();
    assert.equal(second.status, 202);
    assert.equal(second.socket, first.socket, 'the second request reused the kept-alive connection');
    agent.destroy();
  });
});

describe('bodies that cost more than their size', () => {
  let db: TestDatabase;
  let service: TestService;
  let origin: string;
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url);
    origin = await service.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  /** POST `body` gzipped to /events while /healthz is asked meanwhile; both timings in ms. */
  async function postWhileProbing(body: string, contentType: string) {
    const gzipped = gzipSync(body);
    const started = performance.now();
    const bomb = fetch(`${origin}/events`, { method: 'POST', headers: { 'content-type': contentType, 'content-encoding': 'gzip' }, body: gzipped }).then(async (response) => ({
      status: response.status,
      body: (await response.json()) as { code?: string },
      ms: performance.now() - started,
    }));
    // /healthz is asked again and again until the bomb is answered: the slowest answer counts.
    let settled = false;
    void bomb.finally(() => (settled = true));
    let probeMs = 0;
    do {
      const probeStarted = performance.now();
      const probe = await fetch(`${origin}/healthz`);
      assert.equal(probe.status, 200);
      await probe.arrayBuffer();
      probeMs = Math.max(probeMs, performance.now() - probeStarted);
    } while (!settled);
    return { gzippedBytes: gzipped.length, probeMs, ...(await bomb) };
  }

  it("refuses two million junk NDJSON lines (4 KB gzipped) with 413 at once, and /healthz answers meanwhile", async () => {
    const result = await postWhileProbing('x\n'.repeat(2_097_000), 'application/x-ndjson');
    assert.ok(result.gzippedBytes < 10_000, `${result.gzippedBytes} bytes on the wire`);
    assert.equal(result.status, 413);
    assert.equal(result.body.code, 'INGEST_ERR_TOO_MANY_EVENTS');
    assert.ok(result.ms < 2_000, `answered in ${result.ms} ms`);
    assert.ok(result.probeMs < 1_000, `/healthz waited ${result.probeMs} ms`);
  });

  it('refuses a JSON array of a million empty objects with 413 without parsing it', async () => {
    const result = await postWhileProbing(`[${'{},'.repeat(1_000_000)}{}]`, 'application/json');
    assert.equal(result.status, 413);
    assert.equal(result.body.code, 'INGEST_ERR_TOO_MANY_EVENTS');
    assert.ok(result.probeMs < 1_000, `/healthz waited ${result.probeMs} ms`);
  });

  it('answers a flood of blank lines, and a thousand bad lines, with one bounded 400', async () => {
    const blank = await postWhileProbing(' \r\n\n\t'.repeat(800_000), 'application/x-ndjson');
    assert.equal(blank.status, 400);
    assert.ok(blank.probeMs < 1_000, `/healthz waited ${blank.probeMs} ms`);
    const bad = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: `${'{"x":'.repeat(200)}\n`.repeat(1000) });
    assert.equal(bad.statusCode, 400);
    const problem = bad.json<{ code: string; errors: unknown[]; detail: string }>();
    assert.equal(problem.code, 'INGEST_ERR_VALIDATION');
    assert.ok(problem.errors.length <= 100, `${problem.errors.length} problems listed`);
    assert.match(problem.detail, /1000 of 1000 events are invalid/);
    assert.ok(bad.body.length < 64 * 1024, `${bad.body.length} bytes of answer`);
  });
});

describe('inputs that used to answer 500', () => {
  let db: TestDatabase;
  let service: TestService;
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url, { BULK_BODY_LIMIT_BYTES: String(1024 * 1024) });
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  const nested = (levels: number, open: string, close: string, inner = '1') => `${open.repeat(levels)}${inner}${close.repeat(levels)}`;
  const withMetadata = (metadata: string) => JSON.stringify(sampleEvent({ tenant: 'deep', metadata: '@M@' })).replace('"@M@"', metadata);
  const cases: readonly (readonly [string, string, string, string])[] = [
    ['metadata nested 10,000 levels of arrays', '/event', 'application/json', withMetadata(`{"a":${nested(10_000, '[', ']')}}`)],
    ['metadata nested 5,000 levels of objects', '/event', 'application/json', withMetadata(nested(5_000, '{"a":', '}'))],
    ['the same with a number that must stay exact', '/event', 'application/json', withMetadata(nested(5_000, '{"a":', '}', '1e400'))],
    ['deep metadata in an NDJSON line', '/events', 'application/x-ndjson', withMetadata(nested(10_000, '{"a":', '}', '12345678901234567890'))],
    ['deep metadata in a JSON array', '/events', 'application/json', `[${withMetadata(nested(10_000, '[', ']', '1e400'))}]`],
    ['{"ndjson":"x"}', '/events', 'application/json', '{"ndjson":"x"}'],
    ['{"ndjson":[{"value":<event>}]}', '/events', 'application/json', JSON.stringify({ ndjson: [{ value: sampleEvent({ tenant: 'deep' }) }] })],
    ['{"lines":[{"value":<event>}]}', '/events', 'application/json', JSON.stringify({ lines: [{ value: sampleEvent({ tenant: 'deep' }) }] })],
    ['NDJSON sent to /event', '/event', 'application/x-ndjson', JSON.stringify(sampleEvent({ tenant: 'deep' }))],
    ['a bare deep array', '/event', 'application/json', nested(20_000, '[', ']')],
  ];
  for (const [name, url, contentType, payload] of cases) {
    it(`answers ${name} with a 4xx problem`, async () => {
      const response = await service.app.inject({ method: 'POST', url, headers: { 'content-type': contentType }, payload });
      assert.ok(response.statusCode >= 400 && response.statusCode < 500, `${response.statusCode}: ${response.body.slice(0, 300)}`);
      assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal(typeof response.json<{ code: string }>().code, 'string');
      const after = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'still-up' }) });
      assert.equal(after.statusCode, 202);
    });
  }

  it('stored nothing of them', async () => {
    await waitFor(async () => (await db.count("tenant = 'still-up'")) === cases.length, 10_000, 'the probes');
    assert.equal(await db.count("tenant = 'deep'"), 0);
  });
});
