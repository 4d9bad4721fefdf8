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

/**
 * The caller's AbortSignal aborted record() or flush() (code AUDIT_CLIENT_ERR_ABORTED). Named
 * `AbortError`, as undici's RequestAbortedError is, so code that checks `error.name === 'AbortError'`
 * treats it as an abort; `cause` is the signal's reason (what fetch would reject with).
 *  - `taken: false`: the event was never taken (the signal was already aborted, or it aborted while
 *    the call waited for room): nothing of it is buffered or sent.
 *  - `taken: true`: the event was already in the client's hands (buffered, or in a request): only
 *    the wait stopped. Its delivery goes on, `pending`, flush() and close() still count it, and
 *    its outcome is still reported to onRefused / onFailed.
 * `id` is the event's id (the one it is, or would have been, sent with); undefined when the
 * signal was already aborted (record() did nothing with the event). From flush(): `taken: true`,
 * no id (the events it waited for are all still delivered).
 */
export class AuditClientAbortError extends CodedError {
  readonly taken: boolean;
  readonly id: string | undefined;
  constructor(reason: unknown, details: { taken: boolean; id?: string | undefined; message?: string }) {
    const message = details.message ?? (details.taken
      ? 'record() was aborted: only the wait stopped; the event was already taken and is still delivered'
      : 'record() was aborted: the event was not taken (nothing buffered or sent)');
    super('AUDIT_CLIENT_ERR_ABORTED', message, { cause: reason });
    this.name = 'AbortError';
    this.taken = details.taken;
    this.id = details.id;
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
