import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { validate } from '@readme/openapi-parser';
import type { InjectOptions } from 'fastify';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import type { OpenApiDocument } from '../../src/http/openapi/document.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { runScript } from '../helpers/run-script.ts';
import { ContractChecker } from '../helpers/openapi-contract.ts';
import { buildTestService, sampleEvent, type TestService } from '../helpers/service.ts';

/**
 * The served contract against the running app: GET /openapi.json is a valid OpenAPI 3.1
 * document, it has exactly the routes fastify registered, and real answers (accepted, refused
 * for each reason that is cheap to provoke) have a documented status, content type, body and
 * headers. Two configurations: AUTH=on with ACK_MODE=queued, and AUTH=off with ACK_MODE=committed.
 */

interface Served {
  readonly service: TestService;
  readonly document: OpenApiDocument;
  readonly checker: ContractChecker;
}

async function serve(service: TestService): Promise<Served> {
  const response = await service.app.inject({ method: 'GET', url: '/openapi.json' });
  assert.equal(response.statusCode, 200);
  assert.match(String(response.headers['content-type']), /^application\/json/);
  const document = response.json<OpenApiDocument>();
  return { service, document, checker: await ContractChecker.of(document) };
}

/** Send a request, check its answer against the contract, and return it. */
async function exchange({ service, checker }: Served, request: InjectOptions & { method: string; url: string }) {
  const response = await service.app.inject(request);
  checker.check(request.method, request.url.split('?')[0]!, response);
  return response;
}

function problemCode(response: { json<T>(): T }): string {
  return response.json<{ code: string }>().code;
}

function routeSet(routes: readonly { method: string; url: string }[]): string[] {
  return [...new Set(routes.map(({ method, url }) => `${method} ${url}`))].sort();
}

function documentedRouteSet(document: OpenApiDocument): string[] {
  return Object.entries(document.paths)
    .flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
    .sort();
}

const KEYED_ENV = { AUTH: 'on', AUTH_MAX_FAILURES_PER_MINUTE: '2', BODY_LIMIT_BYTES: '2048', BULK_MAX_EVENTS: '5' };
const COMMITTED_ENV = { AUTH: 'off', ACK_MODE: 'committed', METRICS_ON_PUBLIC_LISTENER: 'false' };

describe('the OpenAPI contract of the running app', () => {
  let db: TestDatabase;
  let keyed: Served;
  let committed: Served;
  let key: string;

  before(async () => {
    db = await createTestDatabase();
    const [keyedService, committedService] = await Promise.all([
      buildTestService(db.url, KEYED_ENV),
      buildTestService(db.url, COMMITTED_ENV),
    ]);
    [keyed, committed] = await Promise.all([serve(keyedService), serve(committedService)]);
    ({ key } = await new ApiKeyStore(db.pool).create('acme', 'openapi-contract'));
  });

  after(async () => {
    await Promise.all([keyed?.service.close(), committed?.service.close()]);
    await db?.drop();
  });

  it('serves a valid OpenAPI 3.1 document for its configuration', async () => {
    for (const { document } of [keyed, committed]) {
      const result = await validate(structuredClone(document) as unknown as Parameters<typeof validate>[0]);
      assert.ok(result.valid, JSON.stringify(result));
    }
    assert.deepEqual(keyed.document.paths['/event']!.post!.security, [{ ApiKey: [] }]);
    assert.ok(keyed.document.paths['/event']!.post!.responses['202']);
    assert.equal(committed.document.paths['/event']!.post!.security, undefined);
    assert.ok(committed.document.paths['/event']!.post!.responses['201']);
    const again = await keyed.service.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.deepEqual(again.json(), keyed.document, 'the same document every time');
  });

  it('npm run openapi prints the document the service serves, for the same environment', async () => {
    // buildTestService's defaults that change the document: /metrics on the public listener.
    const printed = await runScript('openapi', [], { METRICS_ON_PUBLIC_LISTENER: 'true', ...KEYED_ENV });
    assert.equal(printed.code, 0, printed.stderr);
    assert.deepEqual(JSON.parse(printed.stdout), keyed.document);
    const refused = await runScript('openapi', [], { ACK_MODE: 'sometimes' });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /ACK_MODE/);
    assert.equal((await runScript('openapi', ['--yaml'], {})).code, 2);
  });

  it('documents exactly the routes fastify registered, HEAD twins included', () => {
    for (const { service, document } of [keyed, committed]) {
      const registered = routeSet(service.app.registeredRoutes);
      assert.ok(registered.includes('POST /events') && registered.includes('HEAD /healthz'), registered.join(', '));
      assert.deepEqual(documentedRouteSet(document), registered);
    }
    assert.ok(documentedRouteSet(keyed.document).includes('GET /metrics'));
    assert.ok(!documentedRouteSet(committed.document).includes('GET /metrics'), 'METRICS_ON_PUBLIC_LISTENER=false: not on this listener');
  });

  it('POST /event: accepted, and refused for each cheap reason, as documented', async () => {
    const auth = { authorization: `Bearer ${key}` };
    const json = { ...auth, 'content-type': 'application/json' };
    const post = (request: Omit<InjectOptions, 'method' | 'url'> & { url?: string }) => exchange(keyed, { method: 'POST', url: '/event', ...request });

    assert.equal((await post({ headers: auth, payload: sampleEvent() })).statusCode, 202);
    const invalid = await post({ headers: auth, payload: sampleEvent({ occurred_at: 'yesterday', actor: {} }) });
    assert.equal(invalid.statusCode, 400);
    assert.equal(problemCode(invalid), 'INGEST_ERR_VALIDATION');
    assert.ok(invalid.json<{ errors: unknown[] }>().errors.length >= 2);
    const cases: [string, Omit<InjectOptions, 'method' | 'url'> & { url?: string }, number, string][] = [
      ['no key', { payload: sampleEvent() }, 401, 'INGEST_ERR_UNAUTHENTICATED'],
      ["another tenant than the key's", { headers: auth, payload: sampleEvent({ tenant: 'globex' }) }, 403, 'INGEST_ERR_TENANT_MISMATCH'],
      ['an oversized body', { headers: auth, payload: sampleEvent({ metadata: { padding: 'x'.repeat(4096) } }) }, 413, 'INGEST_ERR_BODY_TOO_LARGE'],
      ['a wrong content type', { headers: { ...auth, 'content-type': 'text/plain' }, payload: 'hello' }, 415, 'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['NDJSON on the single-event route', { headers: { ...auth, 'content-type': 'application/x-ndjson' }, payload: JSON.stringify(sampleEvent()) }, 415, 'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['another charset', { headers: { ...auth, 'content-type': 'application/json; charset=latin1' }, payload: JSON.stringify(sampleEvent()) }, 415, 'INGEST_ERR_UNSUPPORTED_CHARSET'],
      ['malformed JSON', { headers: json, payload: '{"tenant":' }, 400, 'INGEST_ERR_MALFORMED_JSON'],
      ['a __proto__ key', { headers: json, payload: '{"__proto__":{"x":1}}' }, 400, 'INGEST_ERR_FORBIDDEN_KEY'],
      ['bytes that are not UTF-8', { headers: json, payload: Buffer.from([0x7b, 0xc0, 0x80, 0x7d]) }, 400, 'INGEST_ERR_BAD_UTF8'],
      ['a query parameter', { url: '/event?atomic=true', headers: auth, payload: sampleEvent() }, 400, 'INGEST_ERR_BAD_QUERY'],
      ['a corrupt gzip body', { headers: { ...json, 'content-encoding': 'gzip' }, payload: Buffer.from('not gzip at all') }, 400, 'INGEST_ERR_BAD_ENCODING'],
      ['an unknown Content-Encoding', { headers: { ...json, 'content-encoding': 'compress' }, payload: JSON.stringify(sampleEvent()) }, 415, 'INGEST_ERR_UNSUPPORTED_ENCODING'],
    ];
    for (const [what, request, status, code] of cases) {
      const response = await post(request);
      assert.equal(response.statusCode, status, `${what}: ${response.body}`);
      assert.equal(problemCode(response), code, what);
      assert.match(String(response.headers['content-type']), /^application\/problem\+json/, what);
    }
    // gzip accepted
    const gzipped = await post({ headers: { ...json, 'content-encoding': 'gzip' }, payload: gzipSync(JSON.stringify(sampleEvent())) });
    assert.equal(gzipped.statusCode, 202, gzipped.body);
  });

  it('429 with Retry-After once a client address has failed authentication too often', async () => {
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof exchange>> | undefined;
    for (let attempt = 0; attempt < 5 && !limited; attempt += 1) {
      const response = await exchange(keyed, { method: 'POST', url: '/event', remoteAddress: '198.51.100.23', headers: { authorization: 'Bearer aik_nope' }, payload: sampleEvent() });
      statuses.push(response.statusCode);
      if (response.statusCode === 429) limited = response;
    }
    assert.ok(limited, `statuses: ${statuses.join(', ')}`);
    assert.equal(problemCode(limited), 'INGEST_ERR_AUTH_RATE_LIMITED');
    assert.ok(Number(limited.headers['retry-after']) >= 1);
    assert.deepEqual(statuses.slice(0, 2), [401, 401], 'AUTH_MAX_FAILURES_PER_MINUTE=2 failures first');
  });

  it('POST /events: NDJSON (gzip too) and arrays, partial and atomic, too many and empty, as documented', async () => {
    const auth = { authorization: `Bearer ${key}` };
    const ndjson = { ...auth, 'content-type': 'application/x-ndjson' };
    const lines = (...events: unknown[]) => events.map((event) => JSON.stringify(event)).join('\n') + '\n';
    const post = (request: Omit<InjectOptions, 'method' | 'url'> & { url?: string }) => exchange(keyed, { method: 'POST', url: '/events', ...request });

    const partial = await post({ headers: { ...ndjson, 'content-encoding': 'gzip' }, payload: gzipSync(lines(sampleEvent(), sampleEvent({ outcome: 'maybe' }), sampleEvent())) });
    assert.equal(partial.statusCode, 202, partial.body);
    const body = partial.json<{ accepted: { index: number }[]; rejected: { index: number }[] }>();
    assert.deepEqual([body.accepted.map((item) => item.index), body.rejected.map((item) => item.index)], [[0, 2], [1]]);
    const notJson = await post({ headers: ndjson, payload: `${JSON.stringify(sampleEvent())}\n{"tenant":\n` });
    assert.equal(notJson.statusCode, 202, notJson.body);
    assert.equal((await post({ headers: auth, payload: [sampleEvent(), sampleEvent()] })).statusCode, 202);

    const cases: [string, Omit<InjectOptions, 'method' | 'url'> & { url?: string }, number, string][] = [
      ['one invalid event with atomic=true', { url: '/events?atomic=true', headers: ndjson, payload: lines(sampleEvent(), sampleEvent({ action: '' })) }, 400, 'INGEST_ERR_VALIDATION'],
      ['an unknown parameter', { url: '/events?atomically=yes', headers: ndjson, payload: lines(sampleEvent()) }, 400, 'INGEST_ERR_BAD_QUERY'],
      ['more than BULK_MAX_EVENTS', { headers: ndjson, payload: lines(...Array.from({ length: 6 }, () => sampleEvent())) }, 413, 'INGEST_ERR_TOO_MANY_EVENTS'],
      ['an empty array', { headers: auth, payload: [] }, 400, 'INGEST_ERR_VALIDATION'],
      ['an object, not an array', { headers: auth, payload: sampleEvent() }, 400, 'INGEST_ERR_VALIDATION'],
      ["another tenant than the key's", { headers: auth, payload: [sampleEvent({ tenant: 'globex' })] }, 403, 'INGEST_ERR_TENANT_MISMATCH'],
      ['no key', { headers: { 'content-type': 'application/x-ndjson' }, payload: lines(sampleEvent()) }, 401, 'INGEST_ERR_UNAUTHENTICATED'],
      ['a wrong content type', { headers: { ...auth, 'content-type': 'text/csv' }, payload: 'a,b' }, 415, 'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE'],
    ];
    for (const [what, request, status, code] of cases) {
      const response = await post(request);
      assert.equal(response.statusCode, status, `${what}: ${response.body}`);
      assert.equal(problemCode(response), code, what);
    }
  });

  it('ACK_MODE=committed: 201 for a stored event, 201 and 207 for a bulk, as documented', async () => {
    const post = (url: string, payload: unknown) => exchange(committed, { method: 'POST', url, payload: payload as InjectOptions['payload'] });
    const one = await post('/event', sampleEvent());
    assert.equal(one.statusCode, 201, one.body);
    const all = await post('/events', [sampleEvent(), sampleEvent()]);
    assert.equal(all.statusCode, 201, all.body);
    const some = await post('/events', [sampleEvent(), sampleEvent({ actor: { id: '' } })]);
    assert.equal(some.statusCode, 207, some.body);
    assert.deepEqual(some.json<{ accepted: { outcome: string }[] }>().accepted.map((item) => item.outcome), ['stored']);
  });

  it('the operations routes and unrouted requests answer as documented', async () => {
    for (const served of [keyed, committed]) {
      assert.equal((await exchange(served, { method: 'GET', url: '/healthz' })).statusCode, 200);
      assert.equal((await exchange(served, { method: 'HEAD', url: '/healthz' })).statusCode, 200);
      assert.equal((await exchange(served, { method: 'GET', url: '/readyz' })).statusCode, 200);
      assert.equal((await exchange(served, { method: 'HEAD', url: '/openapi.json' })).statusCode, 200);
      const unrouted = await exchange(served, { method: 'GET', url: '/event' });
      assert.equal(unrouted.statusCode, 404);
      assert.equal(problemCode(unrouted), 'INGEST_ERR_NOT_FOUND');
      assert.equal((await exchange(served, { method: 'DELETE', url: '/nothing/here' })).statusCode, 404);
    }
    const metrics = await exchange(keyed, { method: 'GET', url: '/metrics' });
    assert.equal(metrics.statusCode, 200);
    assert.equal((await exchange(committed, { method: 'GET', url: '/metrics' })).statusCode, 404, 'not on this listener');
  });

  it('the checker fails an answer the contract does not describe (so the checks above can fail)', () => {
    const answer = (statusCode: number, body: unknown, contentType = 'application/json; charset=utf-8') => ({ statusCode, headers: { 'content-type': contentType }, body: JSON.stringify(body) });
    const id = '0190f3c2-6b1e-7c3a-8f00-000000000001';
    assert.doesNotThrow(() => keyed.checker.check('POST', '/event', answer(202, { id })));
    assert.throws(() => keyed.checker.check('POST', '/event', answer(201, { id })), /not documented/);
    assert.throws(() => keyed.checker.check('POST', '/event', answer(202, { id, extra: true })), /does not match/);
    assert.throws(() => keyed.checker.check('POST', '/event', answer(202, { id: 'nope' })), /does not match/);
    assert.throws(() => keyed.checker.check('POST', '/event', answer(202, { id }, 'text/html')), /content type/);
    const problem = { type: 'urn:audit-ingest:problem:INGEST_ERR_QUEUE_FULL', title: 'x', status: 503, code: 'INGEST_ERR_QUEUE_FULL', detail: 'x' };
    assert.throws(() => keyed.checker.check('POST', '/event', answer(503, problem, 'application/problem+json')), /Retry-After is missing/);
    assert.throws(() => keyed.checker.check('POST', '/event', answer(400, { ...problem, status: 400 }, 'application/problem+json')), /does not match/);
  });
});
