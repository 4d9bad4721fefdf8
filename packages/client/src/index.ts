/**
 * @audit-ingest/client: `new AuditClient({ url, apiKey })`, `client.record(event, { signal })`. See README.md.
 */
export {
  AuditClient,
  parseRetryAfter,
  type AuditClientOptions,
  type AuditEvent,
  type EventProblem,
  type FailedResult,
  type FlushOptions,
  type RecordOptions,
  type RecordResult,
  type RefusedResult,
  type RetryOptions,
} from './client.ts';
export { AuditClientAbortError, AuditClientClosedError, AuditClientEventError, AuditClientFullError, RetryableSendError } from './errors.ts';
