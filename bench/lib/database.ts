/**
 * The benchmark's PostgreSQL: DATABASE_URL when set, otherwise one embedded server in a temp
 * directory with production settings (fsync on). A fresh, migrated database per mode, and
 * counters read from the admin database so reading them adds nothing to a mode's numbers.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded-postgres.ts';
import { migrate } from '../../src/db/migrate.ts';

export interface BenchServer {
  /** URL of the admin database (`postgres`). */
  readonly adminUrl: string;
  readonly embedded: boolean;
  /** pg_stat_statements can be read (statement counts are measured, not derived). */
  readonly statementsAvailable: boolean;
  readonly settings: { version: string; fsync: string; synchronousCommit: string };
  /** The embedded server's postmaster, for CPU accounting; undefined with DATABASE_URL. */
  readonly postmasterPid: number | undefined;
  stop(): Promise<void>;
}

export interface ModeDatabase {
  readonly name: string;
  readonly url: string;
}

export interface DatabaseCounters {
  /**
   * pg_stat_database.xact_commit. Each backend publishes it at most once a second, and an idle one
   * only 10 s later (PGSTAT_IDLE_INTERVAL), so it is exact only once the backends have exited.
   */
  readonly xactCommit: number;
  /**
   * The next transaction id (server-wide). Every write transaction takes one when it first writes
   * and commits (or aborts) once; read-only transactions take none. Current at once.
   */
  readonly nextXid: number;
  /** Statements executed in the database (pg_stat_statements, top level, utility included). */
  readonly statements: number;
  /** Of those, bare COMMIT statements (the sink sends its COMMIT in the INSERT's round trip). */
  readonly commitStatements: number;
}

const quietLogger = pino({ level: 'warn' }, pino.destination(2));

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-monitor' });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Start (or connect to) the server and enable pg_stat_statements where we can. */
export async function startBenchServer(): Promise<BenchServer> {
  const external = process.env.DATABASE_URL;
  let tempDir: string | undefined;
  let embedded: EmbeddedDatabase | undefined;
  let adminUrl: string;
  let postmasterPid: number | undefined;
  if (external) {
    adminUrl = external;
  } else {
    tempDir = await mkdtemp(path.join(tmpdir(), 'ingest-bench-'));
    const dataDir = path.join(tempDir, 'pg');
    embedded = await startEmbeddedPostgres({ dataDir, logger: quietLogger, ephemeral: false });
    // pg_stat_statements must be preloaded: set it, then restart the server once.
    await withClient(embedded.url, (client) => client.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`));
    await embedded.stop();
    embedded = await startEmbeddedPostgres({ dataDir, logger: quietLogger, ephemeral: false });
    adminUrl = embedded.url;
    const pid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
    postmasterPid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }
  const statementsAvailable = await withClient(adminUrl, async (client) => {
    try {
      await client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await client.query('SELECT count(*) FROM pg_stat_statements');
      return true;
    } catch {
      return false;
    }
  });
  const settings = await withClient(adminUrl, async (client) => {
    const result = await client.query<{ version: string; fsync: string; sc: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('fsync') AS fsync,
              current_setting('synchronous_commit') AS sc`,
    );
    const row = result.rows[0]!;
    return { version: row.version, fsync: row.fsync, synchronousCommit: row.sc };
  });
  const created: string[] = [];
  createdByServer.set(adminUrl, created);
  const server = embedded;
  return {
    adminUrl,
    embedded: server !== undefined,
    statementsAvailable,
    settings,
    postmasterPid,
    async stop() {
      if (server) {
        await server.stop();
        if (tempDir) await rm(tempDir, { recursive: true, force: true });
        return;
      }
      await withClient(adminUrl, async (client) => {
        for (const name of created) await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      });
    },
  };
}

const createdByServer = new Map<string, string[]>();

/** A fresh database with the service's migrations applied. */
export async function createModeDatabase(server: BenchServer, mode: string): Promise<ModeDatabase> {
  const name = `bench_${mode}_${randomBytes(4).toString('hex')}`;
  await withClient(server.adminUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  createdByServer.get(server.adminUrl)?.push(name);
  const url = new URL(server.adminUrl);
  url.pathname = `/${name}`;
  await migrate(url.toString(), { info: () => {} });
  return { name, url: url.toString() };
}

/** Read from the admin database, so the read itself is not counted against `database`. */
export async function readCounters(server: BenchServer, database: ModeDatabase): Promise<DatabaseCounters> {
  return withClient(server.adminUrl, async (client) => {
    const commits = await client.query<{ n: string; xid: string }>(
      `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = $1) AS n,
              pg_snapshot_xmax(pg_current_snapshot())::text AS xid`,
      [database.name],
    );
    let statements = 0;
    let commitStatements = 0;
    if (server.statementsAvailable) {
      const result = await client.query<{ total: string; commits: string }>(
        `SELECT coalesce(sum(s.calls), 0) AS total,
                coalesce(sum(s.calls) FILTER (WHERE s.query ~* '^\\s*commit\\s*;?\\s*$'), 0) AS commits
           FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
          WHERE d.datname = $1`,
        [database.name],
      );
      statements = Number(result.rows[0]!.total);
      commitStatements = Number(result.rows[0]!.commits);
    }
    return { xactCommit: Number(commits.rows[0]?.n ?? 0), nextXid: Number(commits.rows[0]!.xid), statements, commitStatements };
  });
}

export function countRows(database: ModeDatabase): Promise<number> {
  return withClient(database.url, async (client) => {
    const result = await client.query<{ n: string }>('SELECT count(*) AS n FROM events');
    return Number(result.rows[0]!.n);
  });
}
