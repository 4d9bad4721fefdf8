import type { ErrorCode } from '../../errors.ts';

/**
 * Which problem codes each route can answer, by the step that raises them (the gate, the query
 * check, the body parsers, the route, the write-ahead log). Data for the OpenAPI document; the
 * statuses come from the registry (src/errors.ts). test/integration/openapi-contract.test.ts
 * checks real answers against it, and that every registry code is in the document.
 */

export interface RouteProblemOptions {
  /** AUTH=on: the gate authenticates, and an event may name another tenant than its key's. */
  readonly auth: boolean;
  readonly ackMode: 'queued' | 'committed';
}

/** Any route: a bug. */
const ANY_ROUTE: readonly ErrorCode[] = ['INGEST_ERR_INTERNAL'];

/** The ingest gate (src/http/ingest-gate.ts) before the body is read, and the fair share after it. */
const GATE: readonly ErrorCode[] = ['INGEST_ERR_DRAINING', 'INGEST_ERR_OVERLOADED', 'INGEST_ERR_QUEUE_FULL', 'INGEST_ERR_TENANT_OVER_SHARE'];

/** API-key authentication (src/auth/authenticator.ts) and the key's tenant (src/http/prepare-event.ts). */
const AUTHENTICATION: readonly ErrorCode[] = ['INGEST_ERR_UNAUTHENTICATED', 'INGEST_ERR_AUTH_RATE_LIMITED', 'INGEST_ERR_AUTH_UNAVAILABLE', 'INGEST_ERR_TENANT_MISMATCH'];

/** Per-tenant rate limits (src/limits/; TENANT_*, which need AUTH=on): at the gate, and for a bulk's count after parsing. */
const RATE_LIMITS: readonly ErrorCode[] = ['INGEST_ERR_TENANT_RATE_LIMITED', 'INGEST_ERR_TENANT_BURST_EXCEEDED'];

/** The query string (src/http/query.ts). */
const QUERY: readonly ErrorCode[] = ['INGEST_ERR_BAD_QUERY'];

/** Reading and parsing the body: fastify, @fastify/compress, body-text.ts, json-body.ts, bulk-body.ts, the schema. */
const BODY: readonly ErrorCode[] = [
  'INGEST_ERR_BAD_REQUEST',
  'INGEST_ERR_BODY_TOO_LARGE',
  'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE',
  'INGEST_ERR_UNSUPPORTED_CHARSET',
  'INGEST_ERR_UNSUPPORTED_ENCODING',
  'INGEST_ERR_BAD_ENCODING',
  'INGEST_ERR_BAD_UTF8',
  'INGEST_ERR_MALFORMED_JSON',
  'INGEST_ERR_FORBIDDEN_KEY',
  'INGEST_ERR_VALIDATION',
];

/** Making the events durable (src/http/accept-events.ts). */
const DURABILITY: readonly ErrorCode[] = ['INGEST_ERR_WAL_FULL', 'INGEST_ERR_WAL_FAILED'];

/** POST /event with ACK_MODE=committed: the one event's outcome. (A bulk reports outcomes per event: 207.) */
const COMMITTED_EVENT: readonly ErrorCode[] = ['INGEST_ERR_REJECTED_BY_DATABASE', 'INGEST_ERR_NOT_COMMITTED'];

/** POST /events: the event count (src/http/bulk-body.ts, bulk-route.ts). */
const BULK: readonly ErrorCode[] = ['INGEST_ERR_TOO_MANY_EVENTS'];

/** Answered for any method and path no route has (the not-found handler in src/app.ts). */
export const UNROUTED: readonly ErrorCode[] = ['INGEST_ERR_NOT_FOUND'];

function ingestProblems(options: RouteProblemOptions, ...steps: (readonly ErrorCode[])[]): ErrorCode[] {
  return [...new Set([...GATE, ...(options.auth ? [...AUTHENTICATION, ...RATE_LIMITS] : []), ...QUERY, ...BODY, ...steps.flat(), ...DURABILITY, ...ANY_ROUTE])];
}

export function eventRouteProblems(options: RouteProblemOptions): ErrorCode[] {
  return ingestProblems(options, options.ackMode === 'committed' ? COMMITTED_EVENT : []);
}

export function bulkRouteProblems(options: RouteProblemOptions): ErrorCode[] {
  return ingestProblems(options, BULK);
}

/** The operations routes read no body and have no gate. */
export function opsRouteProblems(): ErrorCode[] {
  return [...ANY_ROUTE];
}
