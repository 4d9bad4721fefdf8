import { CodedError } from '@audit-ingest/batcher';

/** Errors the client raises. Match on `code`, never on the message. */

/** record() after close() began. */
export class AuditClientClosedError extends CodedError {
  constructor(message = 'the audit client is closed: record() after close()') {
    super('AUDIT_CLIENT_ERR_CLOSED', message);
  }
}

/** record() while the buffer holds `capacity` events (whenFull 'reject', or 'wait' past fullWaitMs). */
export class AuditClientFullError extends CodedError {
  constructor(capacity: number) {
    super('AUDIT_CLIENT_ERR_FULL', `the audit client's buffer is full (${capacity} events or capacityBytes not yet sent); back off, or raise capacity`);
  }
}

/** An event the client cannot send at all (not serialisable, or larger than maxEventBytes). */
export class AuditClientEventError extends CodedError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('AUDIT_CLIENT_ERR_EVENT', message, options);
  }
}

/**
 * One attempt at POST /events that may succeed if tried again: a connection error, a timeout, or
 * a 408/429/5xx answer. `retryAfterMs` is the service's Retry-After, when it sent one.
 */
export class RetryableSendError extends CodedError {
  readonly status: number | undefined;
  readonly problemCode: string | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, details: { status?: number; problemCode?: string; retryAfterMs?: number; cause?: unknown } = {}) {
    super('AUDIT_CLIENT_ERR_RETRYABLE', message, details.cause === undefined ? {} : { cause: details.cause });
    this.status = details.status;
    this.problemCode = details.problemCode;
    this.retryAfterMs = details.retryAfterMs;
  }
}
