import {
  AuthorizationError,
  ClosedConnectionError,
  ConnectionError,
  DrainingConnectionError,
  InvalidArgumentError,
  InvalidSubjectError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from '@nats-io/transport-node';
import { JetStreamApiError } from '@nats-io/jetstream';
import { IngestInternalError } from '../internal-errors.ts';

/**
 * What a NATS failure means for the batch that met it, as internal errors with codes that
 * src/db/failure-class.ts classifies like PostgreSQL's (retried, counted by the breaker, or split
 * and dead-lettered):
 *  - JETSTREAM_ERR_UNAVAILABLE: no connection, reconnecting, closed, no JetStream responder (the
 *    server or the stream is not there). Transient; the breaker probes (stream info) for its return.
 *  - JETSTREAM_ERR_TIMEOUT: no acknowledgement within NATS_PUBLISH_TIMEOUT_MS. Transient, as above.
 *  - JETSTREAM_ERR_STREAM_REFUSED: the stream answered and refused (its limits, storage full, a
 *    permission). Transient; the breaker waits out BREAKER_OPEN_MS, as for a locked table.
 *  - JETSTREAM_ERR_EVENT_REFUSED: this event cannot be published at all (payload above the
 *    server's max_payload, a subject it will not take). Permanent: isolated and dead-lettered.
 */
export type JetStreamErrorCode = 'JETSTREAM_ERR_UNAVAILABLE' | 'JETSTREAM_ERR_TIMEOUT' | 'JETSTREAM_ERR_STREAM_REFUSED' | 'JETSTREAM_ERR_EVENT_REFUSED';

export class JetStreamSinkError extends IngestInternalError {
  constructor(code: JetStreamErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
  }
}

const UNAVAILABLE: readonly (abstract new (...args: never[]) => Error)[] = [
  ConnectionError,
  ClosedConnectionError,
  DrainingConnectionError,
  NoRespondersError,
];
/** The client throws this for "no responders" on a JetStream subject; its class is not exported. */
const JETSTREAM_NOT_ENABLED = 'JetStreamNotEnabled';
const REFUSED_BY_STREAM: readonly (abstract new (...args: never[]) => Error)[] = [JetStreamApiError, PermissionViolationError, AuthorizationError];
const REFUSED_EVENT: readonly (abstract new (...args: never[]) => Error)[] = [InvalidArgumentError, InvalidSubjectError];

/** Map an error from the NATS client to one of ours; one of ours (or an abort) passes through. */
export function toJetStreamError(error: unknown, what: string): Error {
  if (!(error instanceof Error)) return new Error(`${what}: ${String(error)}`, { cause: error });
  if (error instanceof IngestInternalError) return error;
  if (error.name === 'AbortError') return error;
  const is = (classes: readonly (abstract new (...args: never[]) => Error)[]) => classes.some((type) => error instanceof type);
  if (error instanceof TimeoutError || (error instanceof RequestError && error.cause instanceof TimeoutError)) {
    return new JetStreamSinkError('JETSTREAM_ERR_TIMEOUT', `${what}: no acknowledgement from JetStream in time`, { cause: error });
  }
  if (is(UNAVAILABLE) || error instanceof RequestError || error.name === JETSTREAM_NOT_ENABLED) {
    return new JetStreamSinkError('JETSTREAM_ERR_UNAVAILABLE', `${what}: JetStream is not reachable (${error.message})`, { cause: error });
  }
  if (is(REFUSED_EVENT)) return new JetStreamSinkError('JETSTREAM_ERR_EVENT_REFUSED', `${what}: refused (${error.message})`, { cause: error });
  if (is(REFUSED_BY_STREAM)) return new JetStreamSinkError('JETSTREAM_ERR_STREAM_REFUSED', `${what}: the stream refused it (${error.message})`, { cause: error });
  return error; // unknown: failure-class.ts treats it as transient (never dead-lettered on a guess)
}
