import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../migrations');

/**
 * Apply every pending migration in migrations/. node-pg-migrate holds a PostgreSQL advisory lock
 * while it runs, so two replicas starting at once apply each migration once; running it again
 * is a no-op.
 */
export async function migrate(databaseUrl: string, logger: Pick<Logger, 'info'>): Promise<void> {
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'ingest_migrations',
    count: Infinity,
    noLock: false,
    advisoryLockMode: 'wait', // a second replica waits for the first, then finds nothing to do
    log: () => {},
  });
  if (applied.length > 0) logger.info({ migrations: applied.map((m) => m.name) }, 'applied database migrations');
}
