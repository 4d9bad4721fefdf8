import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validate } from '@readme/openapi-parser';
import { errorCatalog, type ErrorCode } from '../../src/errors.ts';
import { auditEventSchema } from '../../src/event/schema.ts';
import { buildOpenApiDocument, EXAMPLE_EVENT, type OpenApiDocument, type OpenApiOptions } from '../../src/http/openapi/document.ts';
import { ContractChecker } from '../helpers/openapi-contract.ts';
import { sampleEvent } from '../helpers/service.ts';

const BASE: OpenApiOptions = {
  version: '0.0.0-test',
  auth: true,
  ackMode: 'queued',
  bodyLimitBytes: 65_536,
  bulk: { maxEvents: 1000, bodyLimitBytes: 4 * 1024 * 1024 },
  metricsRoute: true,
  requestEncodings: ['br', 'gzip', 'deflate'],
};

const VARIANTS: OpenApiOptions[] = [true, false].flatMap((auth) =>
  (['queued', 'committed'] as const).flatMap((ackMode) => [true, false].map((metricsRoute) => ({ ...BASE, auth, ackMode, metricsRoute }))),
);

async function validation(document: unknown): Promise<{ valid: boolean; errors?: unknown }> {
  // The parser resolves $refs in place: it gets a copy.
  return validate(structuredClone(document) as Parameters<typeof validate>[0]);
}

type ProblemContent = { schema: { allOf: [unknown, { properties: { status: { const: number }; code: { enum: ErrorCode[] } } }] } };

/** Every (status, code) a document's problem answers list: per operation, and the unrouted NotFound. */
function documentedProblems(document: OpenApiDocument): { where: string; status: number; code: ErrorCode }[] {
  const found: { where: string; status: number; code: ErrorCode }[] = [];
  const collect = (where: string, status: string, response: { content?: Record<string, unknown> }) => {
    const problem = response.content?.['application/problem+json'] as ProblemContent | undefined;
    if (!problem) return;
    const narrowed = problem.schema.allOf[1].properties;
    assert.equal(narrowed.status.const, Number(status), `${where} ${status}: the schema's status`);
    for (const code of narrowed.code.enum) found.push({ where, status: Number(status), code });
  };
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      for (const [status, response] of Object.entries(operation.responses)) collect(`${method.toUpperCase()} ${path}`, status, response);
    }
  }
  for (const [name, response] of Object.entries(document.components.responses)) collect(`components/responses/${name}`, '404', response);
  return found;
}

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document for every configuration that changes it (@readme/openapi-parser)', async () => {
    for (const options of VARIANTS) {
      const document = buildOpenApiDocument(options);
      assert.equal(document.openapi, '3.1.0');
      const result = await validation(document);
      assert.ok(result.valid, `${JSON.stringify(options)}: ${JSON.stringify(result.errors)}`);
    }
  });

  it('the validator refuses a broken document (so the check above can fail)', async () => {
    const broken = structuredClone(buildOpenApiDocument(BASE)) as unknown as { paths: Record<string, Record<string, { responses: Record<string, { description?: string }> }>> };
    delete broken.paths['/event']!.post!.responses['202']!.description;
    assert.equal((await validation(broken)).valid, false);
    const duplicateId = structuredClone(buildOpenApiDocument(BASE)) as unknown as { paths: Record<string, Record<string, { operationId: string }>> };
    duplicateId.paths['/events']!.post!.operationId = 'recordEvent';
    assert.equal((await validation(duplicateId)).valid, false);
  });

  it('lists every code of the error registry with its status', () => {
    // AUTH=on and ACK_MODE=committed: the configuration in which every code can be answered.
    const document = buildOpenApiDocument({ ...BASE, auth: true, ackMode: 'committed' });
    const problems = documentedProblems(document);
    for (const [code, { status }] of Object.entries(errorCatalog)) {
      const places = problems.filter((problem) => problem.code === code);
      assert.ok(places.length > 0, `${code} is in no documented answer`);
      for (const place of places) assert.equal(place.status, status, `${code} under ${place.where}`);
    }
    assert.deepEqual((document.components.schemas.ProblemCode as { enum: string[] }).enum, Object.keys(errorCatalog));
    // The not-found answer is the one for paths the document has not.
    assert.deepEqual(
      problems.filter((problem) => problem.code === 'INGEST_ERR_NOT_FOUND').map((problem) => problem.where),
      ['components/responses/NotFound'],
    );
  });

  it('says what the configuration changes: security and 401/403 with AUTH=on, 201/207/422 with ACK_MODE=committed, /metrics when here', () => {
    const open = buildOpenApiDocument({ ...BASE, auth: false, ackMode: 'queued', metricsRoute: false });
    assert.equal(open.components.securitySchemes, undefined);
    for (const path of ['/event', '/events']) {
      const operation = open.paths[path]!.post!;
      assert.equal(operation.security, undefined);
      assert.deepEqual(Object.keys(operation.responses).filter((status) => ['201', '207', '401', '403', '422'].includes(status)), [], path);
      assert.ok(operation.responses['202'], path);
    }
    assert.equal(open.paths['/metrics'], undefined);

    const closed = buildOpenApiDocument({ ...BASE, auth: true, ackMode: 'committed' });
    assert.deepEqual(closed.components.securitySchemes?.ApiKey, {
      type: 'http',
      scheme: 'bearer',
      bearerFormat: 'aik_<16 hex digits>_<43 base64url characters> (npm run keys -- create --tenant <t>)',
      description: "An API key: it decides the event's tenant",
    });
    const event = closed.paths['/event']!.post!;
    assert.deepEqual(event.security, [{ ApiKey: [] }]);
    assert.deepEqual(['201', '401', '403', '422'].filter((status) => !event.responses[status]), []);
    assert.equal(event.responses['202'], undefined);
    assert.deepEqual(Object.keys(closed.paths['/events']!.post!.responses).filter((status) => status.startsWith('2')), ['201', '207']);
    assert.equal(closed.paths['/healthz']!.get!.security, undefined, 'operations routes need no key');
    assert.ok(closed.paths['/metrics']!.get);
  });

  it('puts the required Retry-After on every 429 and 503 refusal, and on no other answer', () => {
    const document = buildOpenApiDocument({ ...BASE, ackMode: 'committed' });
    let refusals = 0;
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        if (method === 'head') continue; // checked against its GET below
        for (const [status, response] of Object.entries(operation.responses)) {
          const expected = response.content?.['application/problem+json'] !== undefined && (status === '429' || status === '503');
          if (expected) refusals += 1;
          assert.equal(response.headers?.['Retry-After'] !== undefined, expected, `${method} ${path} ${status}`);
        }
      }
      if (item.head) {
        const headers = (operation: NonNullable<typeof item.get>) => Object.entries(operation.responses).map(([status, response]) => [status, response.headers]);
        assert.deepEqual(headers(item.head), headers(item.get!), `HEAD ${path}: the GET's answers`);
        assert.ok(Object.values(item.head.responses).every((response) => response.content === undefined), `HEAD ${path}: no body`);
      }
    }
    assert.equal(refusals, 4, '429 and 503 of each ingest route');
    assert.equal(document.components.headers.RetryAfter!.required, true);
  });

  it('describes events as the route validates them: the schema generated from zod agrees with zod on valid and invalid events', async () => {
    const checker = await ContractChecker.of(buildOpenApiDocument(BASE));
    const eventSchema = checker.schema('AuditEvent');
    const { metadata: _metadata, ...withoutMetadata } = sampleEvent();
    const cases: [string, unknown][] = [
      ['a full event', sampleEvent()],
      ['no optional field', { tenant: 'acme', occurred_at: '2026-11-22T05:00:00Z', action: 'login', actor: { id: 'u1' } }],
      ['no metadata', withoutMetadata],
      ['an unknown field', sampleEvent({ colour: 'blue' })],
      ['no actor', sampleEvent({ actor: undefined })],
      ['an actor without id', sampleEvent({ actor: { name: 'Ada' } })],
      ['an unknown outcome', sampleEvent({ outcome: 'maybe' })],
      ['a bad tenant', sampleEvent({ tenant: '-acme' })],
      ['an empty action', sampleEvent({ action: '' })],
      ['an action too long', sampleEvent({ action: 'a'.repeat(129) })],
      ['an id that is no UUID', sampleEvent({ id: 'not-a-uuid' })],
      ['metadata that is an array', sampleEvent({ metadata: [1] })],
      ['a number for a string', sampleEvent({ action: 5 })],
    ];
    for (const [what, event] of cases) {
      const body = JSON.parse(JSON.stringify(event)) as unknown; // as sent: undefined fields dropped
      assert.equal(checker.matches(eventSchema, body), auditEventSchema.safeParse(body).success, what);
    }
    assert.equal(checker.matches(eventSchema, sampleEvent()), true);
    // The document's examples are events the route takes.
    const document = buildOpenApiDocument(BASE);
    const examples = [
      document.paths['/event']!.post!.requestBody!.content['application/json']!.examples!.event!.value,
      ...(document.paths['/events']!.post!.requestBody!.content['application/json']!.examples!.events!.value as unknown[]),
      ...String(document.paths['/events']!.post!.requestBody!.content['application/x-ndjson']!.examples!.events!.value)
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as unknown),
    ];
    assert.equal(examples.length, 4);
    for (const example of examples) {
      assert.ok(auditEventSchema.safeParse(example).success, JSON.stringify(example));
      assert.ok(checker.matches(eventSchema, example), JSON.stringify(example));
    }
    assert.deepEqual(examples[0], EXAMPLE_EVENT);
    assert.equal(checker.matches(eventSchema, sampleEvent({ colour: 'blue' })), false);
  });
});
