import { z } from 'zod';
import { errorCatalog, type ErrorCode } from '../../errors.ts';
import { PROBLEM_CONTENT_TYPE } from '../problem.ts';
import { bulkQuerySchema, eventQuerySchema } from '../query.ts';
import { componentRef, componentSchemas, type ComponentName, type JsonSchema } from './schemas.ts';
import { bulkRouteProblems, eventRouteProblems, opsRouteProblems, UNROUTED, type RouteProblemOptions } from './route-problems.ts';

/** What the document depends on: the configuration that changes the contract. */
export interface OpenApiOptions extends RouteProblemOptions {
  /** The service's version (package.json). */
  readonly version: string;
  /** BODY_LIMIT_BYTES and the bulk limits (BULK_MAX_EVENTS, BULK_BODY_LIMIT_BYTES). */
  readonly bodyLimitBytes: number;
  readonly bulk: { readonly maxEvents: number; readonly bodyLimitBytes: number };
  /** GET /metrics is on this listener (METRICS_ON_PUBLIC_LISTENER=true). */
  readonly metricsRoute: boolean;
  /** The Content-Encodings a request body may have. */
  readonly requestEncodings: readonly string[];
}

/** The parts of OpenAPI 3.1 this document uses (a validator checks the whole: the tests). */
type Reference = { readonly $ref: string };
type Content = Record<string, { readonly schema: JsonSchema; readonly examples?: Record<string, { readonly summary: string; readonly value: unknown }> }>;
interface Response {
  readonly description: string;
  readonly headers?: Record<string, Reference>;
  readonly content?: Content;
}
type Responses = Record<string, Response>;
interface Parameter {
  readonly name: string;
  readonly in: 'query' | 'header';
  readonly required: boolean;
  readonly description?: string | undefined;
  readonly schema: JsonSchema;
}
interface Operation {
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags?: readonly string[];
  readonly parameters?: readonly Parameter[];
  readonly requestBody?: { readonly required: boolean; readonly description?: string; readonly content: Content };
  readonly security?: readonly Record<string, readonly string[]>[];
  readonly responses: Responses;
}
type PathItem = Partial<Record<'get' | 'head' | 'post', Operation>>;

export interface OpenApiDocument {
  readonly openapi: '3.1.0';
  readonly info: { readonly title: string; readonly version: string; readonly description: string };
  readonly tags: readonly { readonly name: string; readonly description: string }[];
  readonly paths: Record<string, PathItem>;
  readonly components: {
    readonly schemas: Record<string, JsonSchema>;
    readonly responses: Record<string, Response>;
    readonly headers: Record<string, { readonly description: string; readonly required: boolean; readonly schema: JsonSchema }>;
    readonly securitySchemes?: Record<string, JsonSchema>;
  };
}

const JSON_TYPE = 'application/json';
const NDJSON_TYPE = 'application/x-ndjson';
const API_KEY_SCHEME = 'ApiKey';
const RETRY_AFTER_STATUSES = new Set([429, 503]);

/** A typical event (the unit test checks that the route's schema accepts it). */
export const EXAMPLE_EVENT = {
  id: '0193a4c2-7b1e-7c3a-9f00-000000000001',
  tenant: 'acme',
  occurred_at: '2026-11-22T05:00:00.000Z',
  action: 'document.update',
  actor: { id: 'user:42', type: 'user', name: 'Ada' },
  target: { id: 'doc:9', type: 'document', name: 'Q3 plan' },
  outcome: 'success',
  source_ip: '203.0.113.7',
  user_agent: 'billing-service/2.3',
  metadata: { request_id: 'r-1' },
} as const;

/** Descriptions of query parameters (the schemas are the routes' own, src/http/query.ts). */
const QUERY_PARAMETER_DESCRIPTIONS: Record<string, string> = {
  atomic: '`true`: one invalid event refuses the whole request (400). `false` (the default): the valid events are queued, the invalid ones reported by index. Once; any other value is a 400 INGEST_ERR_BAD_QUERY',
};

function schema(name: ComponentName): Reference {
  return componentRef(name);
}

function json(name: ComponentName): Content {
  return { [JSON_TYPE]: { schema: schema(name) } };
}

/** A route's query schema as OpenAPI query parameters. */
function queryParameters(querySchema: z.ZodType): Parameter[] {
  const generated = z.toJSONSchema(querySchema, { io: 'input' }) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(generated.properties ?? {}).map(([name, parameterSchema]) => ({
    name,
    in: 'query',
    required: generated.required?.includes(name) ?? false,
    description: QUERY_PARAMETER_DESCRIPTIONS[name],
    schema: parameterSchema,
  }));
}

/**
 * The problem answers of a route, one response per status: its codes listed (with their
 * registry titles), its body a Problem whose status and code are narrowed to them, and on 429
 * and 503 the Retry-After every such refusal carries.
 */
export function problemResponses(codes: readonly ErrorCode[]): Responses {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const { status } = errorCatalog[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Responses = {};
  for (const [status, statusCodes] of [...byStatus].sort(([a], [b]) => a - b)) {
    responses[String(status)] = {
      description: statusCodes.map((code) => `\`${code}\`: ${errorCatalog[code].title}`).join('\n\n'),
      ...(RETRY_AFTER_STATUSES.has(status) ? { headers: { 'Retry-After': { $ref: '#/components/headers/RetryAfter' } } } : {}),
      content: {
        [PROBLEM_CONTENT_TYPE]: {
          schema: { allOf: [schema('Problem'), { type: 'object', properties: { status: { const: status }, code: { enum: statusCodes } } }] },
        },
      },
    };
  }
  return responses;
}

function ingestOperation(options: OpenApiOptions, operation: Operation, problems: readonly ErrorCode[]): Operation {
  return {
    tags: ['ingest'],
    ...operation,
    parameters: [
      ...(operation.parameters ?? []),
      {
        name: 'Content-Encoding',
        in: 'header',
        required: false,
        description: 'The body may be compressed; every body limit applies to the decompressed bytes',
        schema: { type: 'string', enum: [...options.requestEncodings] },
      },
    ],
    ...(options.auth ? { security: [{ [API_KEY_SCHEME]: [] }] } : {}),
    responses: { ...operation.responses, ...problemResponses(problems) },
  };
}

function eventOperation(options: OpenApiOptions): Operation {
  const committed = options.ackMode === 'committed';
  return ingestOperation(
    options,
    {
      operationId: 'recordEvent',
      summary: 'Record one audit event',
      description: 'Validated, given an id (the client\'s, else a UUIDv7) and made durable (DURABILITY) before the answer. The id is the idempotency key: a retry with the same id is stored once.',
      parameters: queryParameters(eventQuerySchema),
      requestBody: {
        required: true,
        description: `One event, UTF-8 JSON, at most ${options.bodyLimitBytes} bytes (BODY_LIMIT_BYTES) after decompression`,
        content: { [JSON_TYPE]: { schema: schema('AuditEvent'), examples: { event: { summary: 'A typical event', value: EXAMPLE_EVENT } } } },
      },
      responses: committed
        ? { '201': { description: 'Committed to the database (ACK_MODE=committed)', content: json('EventAccepted') } }
        : { '202': { description: 'Accepted: durable per DURABILITY, stored exactly once (or dead-lettered if the database refuses its content)', content: json('EventAccepted') } },
    },
    eventRouteProblems(options),
  );
}

function bulkOperation(options: OpenApiOptions): Operation {
  const committed = options.ackMode === 'committed';
  const { maxEvents, bodyLimitBytes } = options.bulk;
  return ingestOperation(
    options,
    {
      operationId: 'recordEvents',
      summary: 'Record many audit events',
      description: `NDJSON or a JSON array, at most ${maxEvents} events (BULK_MAX_EVENTS, counted before any is parsed) and ${bodyLimitBytes} bytes (BULK_BODY_LIMIT_BYTES) after decompression. Each event is validated on its own; admission is all or nothing: the valid events are queued together or not at all.`,
      parameters: queryParameters(bulkQuerySchema),
      requestBody: {
        required: true,
        content: {
          [NDJSON_TYPE]: {
            schema: { type: 'string', description: 'One AuditEvent (JSON) per line; blank lines are skipped, CRLF line ends accepted. A line that is not JSON is reported by its index' },
            examples: { events: { summary: 'Two events', value: `${JSON.stringify(EXAMPLE_EVENT)}\n${JSON.stringify({ ...EXAMPLE_EVENT, id: undefined, action: 'user.login' })}\n` } },
          },
          [JSON_TYPE]: {
            schema: { type: 'array', items: schema('AuditEvent'), minItems: 1, maxItems: maxEvents },
            examples: { events: { summary: 'One event', value: [EXAMPLE_EVENT] } },
          },
        },
      },
      responses: committed
        ? {
            '201': { description: 'Every event committed (ACK_MODE=committed), none refused', content: json('BulkCommitted') },
            '207': { description: 'Some events refused or not committed: each accepted one has its outcome (retry those not stored with the same id)', content: json('BulkCommitted') },
          }
        : { '202': { description: 'The valid events are accepted (durable per DURABILITY); the invalid ones are listed by index', content: json('BulkAccepted') } },
    },
    bulkRouteProblems(options),
  );
}

function opsOperation(operation: Operation): Operation {
  return { tags: ['operations'], ...operation, responses: { ...operation.responses, ...problemResponses(opsRouteProblems()) } };
}

/** A GET route's automatic HEAD twin (fastify's exposeHeadRoutes): the GET's answers, no bodies. */
function headOf(operation: Operation): Operation {
  const responses: Responses = {};
  for (const [status, response] of Object.entries(operation.responses)) {
    const { content: _content, ...head } = response;
    responses[status] = head;
  }
  return { ...operation, operationId: `${operation.operationId}Head`, summary: `${operation.summary} (headers only)`, responses };
}

function opsPaths(options: OpenApiOptions): Record<string, PathItem> {
  const gets: Record<string, Operation> = {
    '/healthz': opsOperation({ operationId: 'getHealth', summary: 'The process is alive', responses: { '200': { description: 'Alive', content: json('Health') } } }),
    '/readyz': opsOperation({
      operationId: 'getReadiness',
      summary: 'The service should get traffic',
      responses: {
        '200': { description: 'Ready', content: json('Readiness') },
        '503': { description: 'Not ready (draining, database unreachable, breaker open, dead-letter queue or write-ahead log unwritable): `reason` says which', content: json('Readiness') },
      },
    }),
    ...(options.metricsRoute
      ? {
          '/metrics': opsOperation({
            operationId: 'getMetrics',
            summary: 'Prometheus metrics (labels name tenants)',
            responses: { '200': { description: 'The Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } },
          }),
        }
      : {}),
    '/openapi.json': opsOperation({
      operationId: 'getOpenApiDocument',
      summary: 'This document',
      responses: { '200': { description: 'The OpenAPI 3.1 document of this listener', content: { [JSON_TYPE]: { schema: { type: 'object' } } } } },
    }),
  };
  return Object.fromEntries(Object.entries(gets).map(([path, get]) => [path, { get, head: headOf(get) }]));
}

const DESCRIPTION = `Audit-event ingest. Every refusal is an RFC 9457 problem document (\`${PROBLEM_CONTENT_TYPE}\`) with a stable \`code\` (components/schemas/ProblemCode lists them with their statuses; runbook.md says what to do about each). Any method and path not listed here is a 404 INGEST_ERR_NOT_FOUND (components/responses/NotFound). Node itself answers 408 (headers or body too slow) and 431 (headers too large) without a problem document.`;

/** The OpenAPI 3.1 document of the public listener, for this configuration. Built from data, once. */
export function buildOpenApiDocument(options: OpenApiOptions): OpenApiDocument {
  return {
    openapi: '3.1.0',
    info: { title: 'audit-ingest', version: options.version, description: DESCRIPTION },
    tags: [
      { name: 'ingest', description: 'Recording events' },
      { name: 'operations', description: 'Health, readiness, metrics, this document: no authentication' },
    ],
    paths: {
      '/event': { post: eventOperation(options) },
      '/events': { post: bulkOperation(options) },
      ...opsPaths(options),
    },
    components: {
      schemas: componentSchemas(),
      responses: { NotFound: { ...problemResponses(UNROUTED)['404']!, description: 'No route has this method and path' } },
      headers: {
        RetryAfter: {
          description: 'Seconds to wait before retrying: the time the measured drain rate needs to bring the queue under its low-water mark (1-60), the rest of the failed-authentication window, or a fixed pause',
          required: true,
          schema: { type: 'integer', minimum: 1 },
        },
      },
      ...(options.auth
        ? {
            securitySchemes: {
              [API_KEY_SCHEME]: {
                type: 'http',
                scheme: 'bearer',
                bearerFormat: 'aik_<16 hex digits>_<43 base64url characters> (npm run keys -- create --tenant <t>)',
                description: "An API key: it decides the event's tenant",
              },
            },
          }
        : {}),
    },
  };
}
