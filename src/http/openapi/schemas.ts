import { z } from 'zod';
import { errorCatalog, type ErrorCode } from '../../errors.ts';
import { auditEventSchema, METADATA_MAX_BYTES, METADATA_MAX_DEPTH } from '../../event/schema.ts';

/**
 * The zod schemas of the contract's bodies, turned into the document's components/schemas by
 * z.toJSONSchema (JSON Schema 2020-12, OpenAPI 3.1's dialect). The request schema is the one the
 * routes validate with (src/event/schema.ts); the response schemas describe what the routes send
 * and are checked against real answers by test/integration/openapi-contract.test.ts.
 * Response bodies are strict (additionalProperties: false): what the service sends, no more.
 */

const errorCodes = Object.keys(errorCatalog) as [ErrorCode, ...ErrorCode[]];

/**
 * The contract's own metadata registry (ids and descriptions), not zod's global one: the event
 * schema the routes validate with is described here without being changed or re-created.
 */
const contract = z.registry<{ id?: string; description?: string }>();

/** `schema`, with a description in the contract's registry. */
function described<T extends z.ZodType>(schema: T, description: string): T {
  contract.add(schema, { description });
  return schema;
}

const fieldIssueSchema = z.strictObject({
  path: described(z.string(), 'The offending field, dot-separated (`actor.id`); `(body)`, `(line)` or `(query)` for the whole; `[i].` prefixes a bulk element'),
  message: z.string(),
});

const problemCodeSchema = described(
  z.enum(errorCodes),
  `The stable error code; clients match on it. Each code and its HTTP status:\n\n${errorCodes
    .map((code) => `- \`${code}\` (${errorCatalog[code].status}): ${errorCatalog[code].title}`)
    .join('\n')}`,
);

const problemSchema = described(
  z.strictObject({
    type: z.string().regex(/^urn:audit-ingest:problem:INGEST_ERR_[A-Z0-9_]+$/),
    title: described(z.string(), "The code's fixed title"),
    status: z.int().min(400).max(599),
    code: problemCodeSchema,
    detail: described(z.string(), 'What was wrong with this request (5xx: nothing internal)'),
    errors: described(z.array(fieldIssueSchema).optional(), 'With INGEST_ERR_VALIDATION and INGEST_ERR_BAD_QUERY: every offending field (bulk: at most 100)'),
  }),
  'An RFC 9457 problem document (application/problem+json): every refusal',
);

const eventIdSchema = described(z.uuid(), "The event's id: the client's, or the UUIDv7 the service assigned");

const eventAcceptedSchema = z.strictObject({ id: eventIdSchema });

const bulkRejectedSchema = z.strictObject({
  index: described(z.int().min(0), 'The position of the line (or array element) in the request, from 0'),
  errors: z.array(fieldIssueSchema),
});

const bulkAcceptedSchema = z.strictObject({
  accepted: z.array(z.strictObject({ index: z.int().min(0), id: eventIdSchema })),
  rejected: z.array(bulkRejectedSchema),
});

const bulkCommittedSchema = z.strictObject({
  accepted: z.array(
    z.strictObject({
      index: z.int().min(0),
      id: eventIdSchema,
      outcome: described(
        z.enum(['stored', 'rejected', 'failed', 'dropped']),
        'stored: committed (or already stored under this id); rejected: refused by the database for good, dead-lettered; failed / dropped: not committed, retry with the same id',
      ),
    }),
  ),
  rejected: z.array(bulkRejectedSchema),
});

const healthSchema = z.strictObject({ status: z.literal('ok') });
const readinessSchema = z.union([
  z.strictObject({ status: z.literal('ready') }),
  z.strictObject({ status: z.literal('not ready'), reason: described(z.string(), 'Why it should get no traffic now (draining, database unreachable, breaker open, …)') }),
]);

/**
 * What the event schema's refinements check, which JSON Schema cannot say: kept here, beside
 * the contract, so the schema the hot path validates with stays as it is.
 */
const eventShape = auditEventSchema.shape;
for (const [schema, description] of [
  [eventShape.id, 'The idempotency key, per tenant: the same id sent twice by a tenant is stored once. Absent: the service assigns a UUIDv7'],
  [eventShape.tenant, "Required with AUTH=off; with an API key optional, and then it must be the key's tenant (else 403 INGEST_ERR_TENANT_MISMATCH)"],
  [eventShape.occurred_at, 'An RFC 3339 timestamp with an offset (`T`, `t` or a space between date and time), years 0001-9999'],
  [eventShape.source_ip, 'An IPv4 or IPv6 address, no zone id'],
  [eventShape.metadata, `Any JSON object, at most ${METADATA_MAX_BYTES} bytes serialised and ${METADATA_MAX_DEPTH} levels deep, no __proto__, constructor or prototype key; numbers are stored with the digits sent`],
] as const) {
  described(schema, description);
}

/** The component schemas, by name. */
const COMPONENTS = {
  AuditEvent: auditEventSchema,
  FieldIssue: fieldIssueSchema,
  ProblemCode: problemCodeSchema,
  Problem: problemSchema,
  EventAccepted: eventAcceptedSchema,
  BulkRejected: bulkRejectedSchema,
  BulkAccepted: bulkAcceptedSchema,
  BulkCommitted: bulkCommittedSchema,
  Health: healthSchema,
  Readiness: readinessSchema,
} satisfies Record<string, z.ZodType>;
for (const [id, schema] of Object.entries(COMPONENTS)) contract.add(schema, { ...contract.get(schema), id });

export type ComponentName = keyof typeof COMPONENTS;

export type JsonSchema = Record<string, unknown>;

/** A JSON Schema object for a component, referenced the OpenAPI way. */
export function componentRef(name: ComponentName): { $ref: string } {
  return { $ref: `#/components/schemas/${name}` };
}

/**
 * components/schemas: every schema above as JSON Schema 2020-12, cross-references as
 * `#/components/schemas/<name>`. Request schemas as their input (a field with a default is optional).
 */
export function componentSchemas(): Record<string, JsonSchema> {
  const { schemas } = z.toJSONSchema(contract, { metadata: contract, io: 'input', uri: (id) => `#/components/schemas/${id}` });
  const components: Record<string, JsonSchema> = {};
  for (const name of Object.keys(COMPONENTS)) {
    // $schema is the document's dialect already; a $id with a fragment is not allowed in 2020-12.
    const { $schema: _dialect, $id: _id, ...schema } = schemas[name] as JsonSchema;
    components[name] = schema;
  }
  return components;
}
