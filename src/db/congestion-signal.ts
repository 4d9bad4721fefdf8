import { isConnectionFailure, sqlstateOf } from './failure-class.ts';

/**
 * Which write failures say "the database is congested or out of reach" — the signals the adaptive
 * batch window (BATCH_WINDOW=adaptive) backs off on, as data. Out of reach is the breaker's own
 * test (isConnectionFailure: refused, reset, unreachable, connect timeouts, class 08, a server
 * shutting down); congested adds what a database that answers too slowly says. Everything else is
 * not congestion: above all data errors (22xxx, 23xxx: poison, the same rows fail however large
 * the window), and schema or serialisation failures (42P01, 40001), which a smaller window does
 * not mend either.
 */
const CONGESTION_SQLSTATES: ReadonlySet<string> = new Set([
  '53300', // too_many_connections
  '53200', // out_of_memory
  '57014', // query_canceled: statement_timeout
]);

const CONGESTION_CODES: ReadonlySet<string> = new Set([
  'SINK_ERR_COPY_TIMEOUT', // the COPY did not finish within DB_COPY_TIMEOUT_MS
  'DB_ERR_QUERY_TIMEOUT',
]);

export function isCongestionSignal(error: unknown): boolean {
  if (isConnectionFailure(error)) return true;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONGESTION_CODES.has(code)) return true;
  const sqlstate = sqlstateOf(error);
  return sqlstate !== undefined && CONGESTION_SQLSTATES.has(sqlstate);
}
