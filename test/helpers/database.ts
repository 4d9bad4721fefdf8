import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';

/** The server the test run uses: embedded by test/run-tests.ts, or DATABASE_URL. */
export function serverUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run tests through `npm test`');
  return url;
}

export interface TestDatabase {
  readonly url: string;
  readonly pool: pg.Pool;
  count(where?: string): Promise<number>;
  drop(): Promise<void>;
}

/** A fresh, migrated database of its own, for one test file or one test. */
export async function createTestDatabase(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = `ingest_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  if (options.migrate !== false) await migrate(url.toString(), { info: () => {} });
  const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
  pool.on('error', () => {});
  return {
    url: url.toString(),
    pool,
    async count(where = 'true') {
      const result = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM events WHERE ${where}`);
      return Number(result.rows[0]!.n);
    },
    async drop() {
      await pool.end();
      const client = new pg.Client({ connectionString: serverUrl() });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}
