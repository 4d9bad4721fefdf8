/**
 * Internal errors: conditions inside the service that callers handle by `code` (undici's pattern:
 * match on code, never on the message). The base class sets `name` from the subclass and `code`
 * from the constructor. These codes are never sent to clients: the HTTP layer maps the ones it
 * knows to public problem codes (src/errors.ts) and answers 500 for anything else, so an internal
 * error cannot leak through as a public code by accident. It is the batcher package's CodedError
 * under the service's name, so the batcher's own errors (BatcherClosedError, …) are internal
 * errors too.
 */
export { CodedError as IngestInternalError } from '@audit-ingest/batcher';
