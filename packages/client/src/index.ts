/**
 * @audit-ingest/client: `new AuditClient({ url, apiKey })`, `client.record(event)`. See README.md.
 */
export {
  AuditClient,
  parseRetryAfter,
  type AuditClientOptions,
  type AuditEvent,
  type EventProblem,
  type FailedResult,
  type RecordResult,
  type RefusedResult,
  type RetryOptions,
} from './client.ts';
export { AuditClientClosedError, AuditClientEventError, AuditClientFullError, RetryableSendError } from './errors.ts';
