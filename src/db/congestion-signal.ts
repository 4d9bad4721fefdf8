import { sqlstateOf } from './failure-class.ts';

/**
 * Which write failures say "the database is congested or out of reach" — the signals the adaptive
 * batch window (BATCH_WINDOW=adaptive) backs off on, as data. Everything else is not congestion:
 * above all data errors (22xxx, 23xxx: poison, the same rows fail however large the window), and
 * schema or serialisation failures (42P01, 40001), which a smaller window does not mend either.
 */
const CONGESTION_SQLSTATES: ReadonlySet<string> = new Set([
  '53300', // too_many_connections
  '53200', // out_of_memory
  '57014', // query_canceled: statement_timeout
  '57P01', // admin_shutdown
  '57P03', // cannot_connect_now
]);

/** Class 08: connection exception (08000, 08003, 08006, …). */
const CONGESTION_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(['08']);

const CONGESTION_CODES: ReadonlySet<string> = new Set([
  'SINK_ERR_COPY_TIMEOUT', // the COPY did not finish within DB_COPY_TIMEOUT_MS
  'DB_ERR_CONNECT_TIMEOUT', // no pool connection within DB_CONNECT_TIMEOUT_MS
  'DB_ERR_QUERY_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'JETSTREAM_ERR_TIMEOUT', // SINK=jetstream: no acknowledgement within NATS_PUBLISH_TIMEOUT_MS
  'JETSTREAM_ERR_UNAVAILABLE',
]);

export function isCongestionSignal(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  // Codes first: EPIPE has the shape of a SQLSTATE.
  if (typeof code === 'string' && CONGESTION_CODES.has(code)) return true;
  const sqlstate = sqlstateOf(error);
  if (sqlstate !== undefined) return CONGESTION_SQLSTATES.has(sqlstate) || CONGESTION_SQLSTATE_CLASSES.has(sqlstate.slice(0, 2));
  if (typeof code === 'string') return false;
  // pg's own error for a socket that closed under it has no code.
  return error instanceof Error && /^Connection terminated/.test(error.message);
}
