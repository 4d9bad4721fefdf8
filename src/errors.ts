/**
 * The error registry: every error a client can see, with its stable code and HTTP status.
 * Clients and tests match on `code`. Each code has a section in runbook.md (checked by a test).
 */
export const errorCatalog = {
  INGEST_ERR_VALIDATION: { status: 400, title: 'The event does not match the schema' },
  INGEST_ERR_MALFORMED_JSON: { status: 400, title: 'The body is not valid JSON' },
  INGEST_ERR_FORBIDDEN_KEY: { status: 400, title: 'The body holds a __proto__ or constructor.prototype key' },
  INGEST_ERR_BAD_REQUEST: { status: 400, title: 'The request is malformed' },
  INGEST_ERR_BAD_UTF8: { status: 400, title: 'The body is not valid UTF-8' },
  INGEST_ERR_BAD_QUERY: { status: 400, title: 'The query string has an unknown, repeated or invalid parameter' },
  INGEST_ERR_UNAUTHENTICATED: { status: 401, title: 'A valid API key is required (Authorization: Bearer <key>)' },
  INGEST_ERR_TENANT_MISMATCH: { status: 403, title: "The event's tenant is not the API key's tenant" },
  INGEST_ERR_NOT_FOUND: { status: 404, title: 'No such route' },
  INGEST_ERR_BODY_TOO_LARGE: { status: 413, title: 'The body is larger than the limit' },
  INGEST_ERR_TENANT_BURST_EXCEEDED: { status: 413, title: "The request alone is larger than the tenant's rate-limit burst (events or bytes); split it" },
  INGEST_ERR_TOO_MANY_EVENTS: { status: 413, title: 'More events in one request than BULK_MAX_EVENTS' },
  INGEST_ERR_UNSUPPORTED_ENCODING: { status: 415, title: 'Unsupported Content-Encoding' },
  INGEST_ERR_BAD_ENCODING: { status: 400, title: 'The compressed body is truncated or corrupt' },
  INGEST_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported content type' },
  INGEST_ERR_UNSUPPORTED_CHARSET: { status: 415, title: 'The body declares a charset other than UTF-8' },
  INGEST_ERR_REJECTED_BY_DATABASE: { status: 422, title: 'The database refused the event; it was dead-lettered' },
  INGEST_ERR_OVERLOADED: { status: 429, title: 'The queue is above its high-water mark; retry later' },
  INGEST_ERR_TENANT_OVER_SHARE: { status: 429, title: "This tenant holds more than its fair share of the queue; retry later" },
  INGEST_ERR_TENANT_RATE_LIMITED: { status: 429, title: 'This tenant is over its rate limit (events/s or bytes/s); retry after Retry-After' },
  INGEST_ERR_AUTH_RATE_LIMITED: { status: 429, title: 'Too many failed authentication attempts from this address' },
  INGEST_ERR_QUEUE_FULL: { status: 503, title: 'The queue is full; retry later' },
  INGEST_ERR_AUTH_UNAVAILABLE: { status: 503, title: 'The API key cannot be checked right now (database unreachable); retry later' },
  INGEST_ERR_WAL_FULL: { status: 503, title: 'The write-ahead log is full (WAL_MAX_BYTES or the disk); nothing was acknowledged' },
  INGEST_ERR_WAL_FAILED: { status: 503, title: 'The write-ahead log failed; the instance is restarting' },
  INGEST_ERR_DRAINING: { status: 503, title: 'The service is shutting down; retry on another instance' },
  INGEST_ERR_NOT_COMMITTED: { status: 503, title: 'The event could not be committed; retry it' },
  INGEST_ERR_INTERNAL: { status: 500, title: 'Internal error' },
} as const;

export type ErrorCode = keyof typeof errorCatalog;

export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

export class IngestError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly issues: readonly FieldIssue[] | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: { issues?: readonly FieldIssue[]; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(detail ?? errorCatalog[code].title, { cause: options.cause });
    this.name = 'IngestError';
    this.code = code;
    this.status = errorCatalog[code].status;
    this.issues = options.issues;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/**
 * An IngestError without a stack trace, for a refusal answered where it is decided (the ingest
 * gate, the rate limiter), never thrown through code worth a trace: capturing the stack was a
 * tenth of a refused request's CPU (bench:noisy profile), and handleError logs planned refusals
 * without one anyway.
 */
export function stacklessIngestError(...args: ConstructorParameters<typeof IngestError>): IngestError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new IngestError(...args);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
