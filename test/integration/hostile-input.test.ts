import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
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
});
