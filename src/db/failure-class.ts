/**
 * What a database failure means for the batch that met it, as data.
 *  - transient: the database or the path to it is unwell; the same batch may succeed later.
 *    Retried with backoff, counted by the breaker, never dead-lettered.
 *  - permanent: the database refused this data; retrying it unchanged fails the same way.
 *    The batch is split to isolate the rows at fault, which go to the dead-letter queue.
 * Anything unrecognised is transient: an event is never dead-lettered on a guess.
 */
export type FailureKind = 'transient' | 'permanent';

/** SQLSTATE classes (first two characters) and what they mean here. */
const SQLSTATE_CLASSES: Readonly<Record<string, FailureKind>> = {
  '08': 'transient', // connection exception
  '22': 'permanent', // data exception: a value the column cannot hold
  '23': 'permanent', // integrity constraint violation: CHECK, NOT NULL, FK, exclusion
  '25': 'transient', // invalid transaction state (e.g. idle-in-transaction timeout)
  '40': 'transient', // transaction rollback: serialization failure 40001, deadlock 40P01
  '42': 'permanent', // syntax error or access rule violation on a row's content
  '53': 'transient', // insufficient resources: disk full, out of memory, too many connections 53300
  '57': 'transient', // operator intervention: statement timeout 57014, admin shutdown 57P01, crash recovery 57P03
  '58': 'transient', // system error (I/O)
};

/** Exact SQLSTATEs whose meaning differs from their class. */
const SQLSTATE_EXCEPTIONS: Readonly<Record<string, FailureKind>> = {
  '42P01': 'transient', // undefined_table: a missing migration, not bad data
  '42703': 'transient', // undefined_column: schema drift, not bad data
  '42883': 'transient', // undefined_function
  '42501': 'transient', // insufficient_privilege: a grant is missing
  '42P10': 'transient', // invalid_column_reference (ON CONFLICT target missing): schema drift
};

/** Network and driver failures that carry no SQLSTATE. */
const ERROR_CODES: Readonly<Record<string, FailureKind>> = {
  ECONNREFUSED: 'transient',
  ECONNRESET: 'transient',
  ETIMEDOUT: 'transient',
  EPIPE: 'transient',
  EHOSTUNREACH: 'transient',
  ENETUNREACH: 'transient',
  ENOTFOUND: 'transient',
  EAI_AGAIN: 'transient',
  SINK_ERR_COPY_TIMEOUT: 'transient',
  DB_ERR_CONNECT_TIMEOUT: 'transient', // pool.ts: no connection within DB_CONNECT_TIMEOUT_MS
  DB_ERR_QUERY_TIMEOUT: 'transient', // pool.ts: a client-side query timeout
  DLQ_ERR_WRITE: 'transient',
  // SINK=jetstream (src/jetstream/errors.ts maps the NATS client's errors to these)
  JETSTREAM_ERR_UNAVAILABLE: 'transient', // no connection, reconnecting, no JetStream responder
  JETSTREAM_ERR_TIMEOUT: 'transient', // no acknowledgement within NATS_PUBLISH_TIMEOUT_MS
  JETSTREAM_ERR_STREAM_REFUSED: 'transient', // the stream's limits, storage, permissions
  JETSTREAM_ERR_EVENT_REFUSED: 'permanent', // this event cannot be published (max_payload, subject)
  // SINK=http (src/forward/errors.ts maps the receiver's answers to these)
  FORWARD_ERR_UNAVAILABLE: 'transient', // no connection, reset, timeout, 5xx, 503
  FORWARD_ERR_THROTTLED: 'transient', // 429 (after its Retry-After)
  FORWARD_ERR_MISCONFIGURED: 'transient', // 401, 404: the edge's key or URL, not the events
  FORWARD_ERR_REFUSED: 'permanent', // 400/403/413/415 for the request's content: split, isolate
  FORWARD_ERR_EVENT_REFUSED: 'permanent', // one event the receiver refused (dead-letter records)
};

const SQLSTATE = /^[0-9A-Z]{5}$/;

export function sqlstateOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}

/** What the tables say of this failure, or undefined when they do not know it. */
export function recognisedFailure(error: unknown): FailureKind | undefined {
  const sqlstate = sqlstateOf(error);
  if (sqlstate !== undefined) return SQLSTATE_EXCEPTIONS[sqlstate] ?? SQLSTATE_CLASSES[sqlstate.slice(0, 2)];
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? ERROR_CODES[code] : undefined;
}

/** The tables' verdict; a failure they do not know is transient (never dead-lettered on a guess). */
export function classifyFailure(error: unknown): FailureKind {
  return recognisedFailure(error) ?? 'transient';
}

export const isPermanentFailure = (error: unknown): boolean => classifyFailure(error) === 'permanent';
export const isTransientFailure = (error: unknown): boolean => classifyFailure(error) === 'transient';

/**
 * Failures that say the database, or the path to it, is not there (as opposed to a database that
 * answers but cannot take this write: a lock wait, a full disk, a missing table). For these a
 * `SELECT 1` on a fresh connection tells whether it is back, so the breaker probes instead of
 * sitting out its open window (src/sink/breaker-sink.ts).
 */
const CONNECTION_FAILURE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'DB_ERR_CONNECT_TIMEOUT', // no connection within DB_CONNECT_TIMEOUT_MS
  '57P01', // admin_shutdown: the server is stopping (pg_ctl stop/restart)
  '57P02', // crash_shutdown: another backend crashed, every session ended
  '57P03', // cannot_connect_now: starting up or in recovery
  'JETSTREAM_ERR_UNAVAILABLE', // the breaker's probe (stream info) tells when NATS and the stream are back
  'JETSTREAM_ERR_TIMEOUT',
  'FORWARD_ERR_UNAVAILABLE', // the breaker's probe (the receiver's /readyz) tells when it is back
  'FORWARD_ERR_THROTTLED', // a receiver shedding load is ready again when its /readyz says so
]);
/** pg's own errors for a socket that closed under it carry no code. */
const CONNECTION_FAILURE_MESSAGES: readonly RegExp[] = [/^Connection terminated/];

export function isConnectionFailure(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return CONNECTION_FAILURE_CODES.has(code) || (SQLSTATE.test(code) && code.startsWith('08'));
  return error instanceof Error && CONNECTION_FAILURE_MESSAGES.some((pattern) => pattern.test(error.message));
}
