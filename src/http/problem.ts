import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { errorCatalog, IngestError, type ErrorCode } from '../errors.ts';
import { IngestInternalError } from '../internal-errors.ts';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
/** What the answers carry: fastify would append the charset to the bare type on every send. */
const PROBLEM_MEDIA_TYPE_UTF8 = `${PROBLEM_CONTENT_TYPE}; charset=utf-8`;

/**
 * Fastify's own error codes, mapped onto the registry so clients see one vocabulary. (JSON syntax
 * errors never reach here: the body parsers in json-body.ts and bulk-body.ts raise our codes.)
 */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'INGEST_ERR_UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'INGEST_ERR_BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INGEST_ERR_BAD_REQUEST',
};

/** Send an RFC 9457 problem document. 5xx bodies say nothing internal. */
declare module 'fastify' {
  interface FastifyReply {
    /** The error code of the problem document sent, for per-reason metrics. */
    problemCode: ErrorCode | undefined;
  }
}

export function sendProblem(reply: FastifyReply, error: IngestError): FastifyReply {
  reply.problemCode = error.code;
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  const internal = error.status >= 500 && error.code === 'INGEST_ERR_INTERNAL';
  // Serialised here and sent as a string with its full media type: fastify then neither looks up a
  // serialiser nor rewrites the content type (a few % of a refused request's CPU).
  return reply
    .code(error.status)
    .type(PROBLEM_MEDIA_TYPE_UTF8)
    .send(
      JSON.stringify({
        type: `urn:audit-ingest:problem:${error.code}`,
        title: errorCatalog[error.code].title,
        status: error.status,
        code: error.code,
        detail: internal ? errorCatalog[error.code].title : error.message,
        ...(error.issues ? { errors: error.issues } : {}),
      }),
    );
}

/** Turn anything thrown in a route into an IngestError with the right status. */
export function toIngestError(error: FastifyError | Error): IngestError {
  if (error instanceof IngestError) return error;
  // An internal error that escapes a route is a bug (500), whatever its code says.
  if (error instanceof IngestInternalError) return new IngestError('INGEST_ERR_INTERNAL', undefined, { cause: error });
  const fastifyError = error as FastifyError;
  if (fastifyError.code && fastifyError.code in errorCatalog) {
    return new IngestError(fastifyError.code as ErrorCode, error.message, { cause: error });
  }
  const mapped = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (mapped) return new IngestError(mapped, fastifyError.message, { cause: error });
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    if (status === 413) return new IngestError('INGEST_ERR_BODY_TOO_LARGE', error.message, { cause: error });
    if (status === 415) return new IngestError('INGEST_ERR_UNSUPPORTED_MEDIA_TYPE', error.message, { cause: error });
    return new IngestError('INGEST_ERR_BAD_REQUEST', error.message, { cause: error });
  }
  return new IngestError('INGEST_ERR_INTERNAL', undefined, { cause: error });
}

/**
 * The route error handler. As fastify's own: a refusal the service planned (every IngestError and
 * every mapped fastify error, 503s such as a full queue included) is not an error-level event — it
 * is logged at debug with its code, no stack, and counted by the response metrics; only a failure
 * nobody planned (INGEST_ERR_INTERNAL) is logged at error, once, with its stack.
 */
export function handleError(this: unknown, error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const ingestError = toIngestError(error);
  if (ingestError.code === 'INGEST_ERR_INTERNAL') {
    request.log.error({ err: error }, 'request failed with an unexpected error; this is a bug, report it with this log line');
  } else {
    request.log.debug({ code: ingestError.code, status: ingestError.status, detail: ingestError.message.slice(0, 200) }, 'request refused');
  }
  return sendProblem(reply, ingestError);
}
