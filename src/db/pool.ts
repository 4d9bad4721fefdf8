import pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';

/** A pool whose every wait is bounded, and whose idle-client errors are logged, never thrown. */
export function createPool(databaseUrl: string, db: Config['db'], logger: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: db.poolSize,
    connectionTimeoutMillis: db.connectTimeoutMs,
    statement_timeout: db.statementTimeoutMs,
    idle_in_transaction_session_timeout: db.copyTimeoutMs * 2,
    application_name: 'audit-ingest',
    // Lets the server notice an abandoned connection even while a query waits on a lock.
    options: '-c client_connection_check_interval=1000',
    keepAlive: true,
  });
  pool.on('error', (error) => {
    logger.warn(
      { err: error },
      'an idle database connection failed and was discarded; the pool reconnects on demand. If this repeats, check the database and the network to it',
    );
  });
  return pool;
}

/**
 * Listen for a checked-out client's 'error' for as long as it is checked out, and hand it to
 * `onError` (which should discard the client). pg-pool listens only while a client is idle: a
 * socket that dies during a checkout (a backend terminated or killed, PostgreSQL restarting every
 * backend after a crash, a network reset) emits 'error' with no listener, which is an uncaught
 * exception that takes the process down. The query in flight, if any, is rejected all the same;
 * the caller sees the failure there, or on its next query (the client is no longer queryable).
 * Returns the function that removes the listener: call it when the client is released.
 */
export function onCheckedOutClientError(client: pg.PoolClient, onError: (error: Error) => void): () => void {
  const listener = (error: Error) => onError(error);
  client.on('error', listener);
  return () => client.off('error', listener);
}

/** True when the database answers a trivial query within `timeoutMs`. */
export async function isDatabaseReachable(pool: pg.Pool, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const probe = pool.query('SELECT 1');
    probe.catch(() => {}); // a late failure after the timeout is not an unhandled rejection
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
    });
    await Promise.race([probe, timeout]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
