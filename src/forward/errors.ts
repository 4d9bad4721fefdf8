import { IngestInternalError } from '../internal-errors.ts';

/**
 * What a failed forward (SINK=http) means for the batch that met it, as internal errors with codes
 * that src/db/failure-class.ts classifies like PostgreSQL's:
 *  - FORWARD_ERR_UNAVAILABLE: no connection, a reset, a timeout, a 5xx, or a 503 (the receiver is
 *    draining or its own storage is away). Transient; the breaker probes the receiver's /readyz.
 *  - FORWARD_ERR_THROTTLED: 429, the receiver sheds load. Transient, after its Retry-After.
 *  - FORWARD_ERR_MISCONFIGURED: 401, 404 and other answers that say the edge is set up wrong
 *    (FORWARD_API_KEY, FORWARD_URL), not that the events are bad. Transient: never dead-lettered.
 *  - FORWARD_ERR_REFUSED: the receiver refused the request for its content (400, 403 a tenant
 *    the key does not cover, 413, 415). Permanent: the batch is split and the event at fault isolated.
 *  - FORWARD_ERR_EVENT_REFUSED: the receiver took the request but refused this one event (its
 *    `rejected` list). Written to the dead-letter queue with the receiver's reasons.
 */
export type ForwardErrorCode = 'FORWARD_ERR_UNAVAILABLE' | 'FORWARD_ERR_THROTTLED' | 'FORWARD_ERR_MISCONFIGURED' | 'FORWARD_ERR_REFUSED' | 'FORWARD_ERR_EVENT_REFUSED';

export class ForwardSinkError extends IngestInternalError {
  /** The receiver's HTTP status, when it answered. */
  readonly statusCode: number | undefined;
  /** Its Retry-After was waited before this was thrown: the retry goes without a further backoff. */
  readonly retryAfterWaited: boolean;
  readonly forwardCode: ForwardErrorCode;

  constructor(code: ForwardErrorCode, message: string, options: { cause?: unknown; statusCode?: number; retryAfterWaited?: boolean } = {}) {
    super(code, message, options);
    this.forwardCode = code;
    this.statusCode = options.statusCode;
    this.retryAfterWaited = options.retryAfterWaited ?? false;
  }
}

/** The error a status the receiver answered with stands for (undefined: 2xx). */
export function errorOfStatus(statusCode: number, detail: string): ForwardSinkError | undefined {
  if (statusCode >= 200 && statusCode < 300) return undefined;
  const what = `the receiver answered ${statusCode}${detail ? `: ${detail}` : ''}`;
  if (statusCode === 429) return new ForwardSinkError('FORWARD_ERR_THROTTLED', what, { statusCode });
  if (statusCode === 408 || statusCode >= 500) return new ForwardSinkError('FORWARD_ERR_UNAVAILABLE', what, { statusCode });
  if (statusCode === 400 || statusCode === 403 || statusCode === 413 || statusCode === 415 || statusCode === 422) {
    return new ForwardSinkError('FORWARD_ERR_REFUSED', what, { statusCode });
  }
  // 401 (a wrong or revoked key), 404 (FORWARD_URL is not this service) and anything unknown:
  // the edge's setup, not the events. Never dead-lettered on a guess.
  return new ForwardSinkError('FORWARD_ERR_MISCONFIGURED', what, { statusCode });
}

/** A failure before any answer (refused, reset, timed out): the receiver or the path to it is away. */
export function unavailable(error: unknown, what: string): Error {
  if (error instanceof IngestInternalError) return error;
  if (error instanceof Error && error.name === 'AbortError') return error;
  const message = error instanceof Error ? `${error.message}${'code' in error ? ` (${String(error.code)})` : ''}` : String(error);
  return new ForwardSinkError('FORWARD_ERR_UNAVAILABLE', `${what}: ${message}`, { cause: error });
}
