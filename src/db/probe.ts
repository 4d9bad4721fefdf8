import pg from 'pg';

/**
 * A cheap check that the database answers: `SELECT 1` on a fresh connection of its own (never one
 * of the pool's, which may all be stuck on a dead peer, and never a batch), bounded by `timeoutMs`
 * as a whole — connect, authenticate, query. Past the timeout the socket is destroyed, so a frozen
 * peer (a partition that drops every byte without a reset) costs one socket for `timeoutMs`, no more.
 * Resolves when the database answered; rejects with the failure otherwise.
 */
export function probeDatabase(connection: pg.ClientConfig, timeoutMs: number): Promise<void> {
  const client = new pg.Client({
    ...connection,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: 'audit-ingest-probe',
  });
  client.on('error', () => {}); // a socket that dies after the verdict is not an uncaught error
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(Object.assign(new Error(`the database did not answer SELECT 1 within ${timeoutMs} ms`), { code: 'DB_ERR_CONNECT_TIMEOUT' }));
    }, timeoutMs);
    timer.unref();
  });
  const probe = (async () => {
    await client.connect();
    await client.query('SELECT 1');
  })();
  probe.catch(() => {}); // settles after the timeout, unobserved
  return Promise.race([probe, timedOut]).then(
    () => {
      clearTimeout(timer);
      void client.end().catch(() => {});
    },
    (error: unknown) => {
      clearTimeout(timer);
      // end() waits for the server's goodbye, which a peer that answers nothing never sends.
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      void client.end().catch(() => {});
      throw error;
    },
  );
}
