import pg from 'pg';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';

/** pg's timeouts carry no `code`; these give them one, so logs and failure-class.ts can match on it. */
export const DB_CONNECT_TIMEOUT = 'DB_ERR_CONNECT_TIMEOUT';
export const DB_QUERY_TIMEOUT = 'DB_ERR_QUERY_TIMEOUT';

const TIMEOUT_CODES: readonly [RegExp, string][] = [
  [/^timeout exceeded when trying to connect$/, DB_CONNECT_TIMEOUT], // pg-pool: no client within connectionTimeoutMillis
  [/^Connection terminated due to connection timeout$/, DB_CONNECT_TIMEOUT], // pg: the connection was not up in time
  [/^Query read timeout$/, DB_QUERY_TIMEOUT], // pg: query_timeout
];

/** The same error, with a `code` when it is one of pg's code-less timeouts. */
export function withTimeoutCode<T>(error: T): T {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== undefined) return error;
  const match = TIMEOUT_CODES.find(([pattern]) => pattern.test(error.message));
  if (match) Object.defineProperty(error, 'code', { value: match[1], enumerable: true, configurable: true, writable: true });
  return error;
}

type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void;

/** pg.Pool whose connect failures (pool.connect and pool.query alike) carry a timeout's code. */
class CodedTimeoutPool extends pg.Pool {
  override connect(): Promise<pg.PoolClient>;
  override connect(callback: ConnectCallback): void;
  override connect(callback?: ConnectCallback): Promise<pg.PoolClient> | undefined {
    if (callback) {
      super.connect((error, client, done) => callback(error && withTimeoutCode(error), client, done));
      return undefined;
    }
    return super.connect().catch((error: unknown) => {
      throw withTimeoutCode(error);
    });
  }
}

/** A pool whose every wait is bounded, and whose idle-client errors are logged, never thrown. */
export function createPool(databaseUrl: string, db: Config['db'], logger: Logger): pg.Pool {
  const pool = new CodedTimeoutPool({
    connectionString: databaseUrl,
    max: db.poolSize,
    connectionTimeoutMillis: db.connectTimeoutMs,
    statement_timeout: db.statementTimeoutMs,
    idle_in_transaction_session_timeout: db.copyTimeoutMs * 2,
    application_name: 'audit-ingest',
    // Lets the server notice an abandoned connection even while a query waits on a lock.
    options: '-c client_connection_check_interval=1000',
    keepAlive: true,
    // Without a delay node-postgres calls setKeepAlive(true, 0): Linux refuses TCP_KEEPIDLE=0
    // (EINVAL, seen with strace) and the kernel's default idle time (2 h) applies instead.
    keepAliveInitialDelayMillis: 10_000,
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

/** True when the database answers a trivial query within `timeoutMs` (through the pool). */
export async function isDatabaseReachable(pool: pg.Pool, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    // query_timeout too: on a peer that answers nothing the query would otherwise hold its pool
    // connection for as long as the socket lives (a frozen path never resets it), and a readiness
    // check every few seconds would soon hold them all.
    const probe = pool.query({ text: 'SELECT 1', query_timeout: timeoutMs } as pg.QueryConfig);
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
