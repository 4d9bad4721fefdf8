/**
 * The PostgreSQL server the chaos run owns, so it can kill and restart it: the embedded server
 * (src/db/embedded-postgres.ts) for the first start, then its own `pg_ctl` for the faults. As root
 * PostgreSQL runs as the `postgres` user, so pg_ctl does too (runuser).
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.ts';
import { migrate } from '../../src/db/migrate.ts';

const run = promisify(execFile);

/** A server the run may only use (DATABASE_URL given): the database faults are skipped. */
export interface DatabaseServer {
  readonly url: string;
  /** Only on a server this run started. */
  readonly control: ServerControl | undefined;
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface ServerControl {
  /** SIGKILL the postmaster (its backends follow); resolves once it is gone. */
  kill(): Promise<void>;
  /** Start it again on the same port, after a kill (crash recovery runs); resolves once it accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl restart -m fast`: sessions end, the server shuts down cleanly and starts again. */
  restartFast(): Promise<void>;
  /** Start it if it is not running (a scenario that failed half-way must not break the next). */
  ensureRunning(): Promise<void>;
}

/** The pg_ctl of the embedded-postgres binaries package for this platform. */
async function pgCtlPath(): Promise<string> {
  const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { pg_ctl: string };
  return binaries.pg_ctl;
}

async function pgCtl(args: readonly string[]): Promise<void> {
  const pgCtlFile = await pgCtlPath();
  const [file, argv] = userInfo().uid === 0 ? ['runuser', ['-u', 'postgres', '--', pgCtlFile, ...args]] : [pgCtlFile, [...args]];
  await run(file, argv, { timeout: 60_000 });
}

function databaseUrl(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

function onServer(serverUrl: string): Pick<DatabaseServer, 'createDatabase' | 'dropDatabase'> {
  const admin = async <T>(work: (client: pg.Client) => Promise<T>) => {
    const client = new pg.Client({ connectionString: serverUrl });
    client.on('error', () => {});
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  };
  return {
    async createDatabase(name) {
      await admin((client) => client.query(`CREATE DATABASE ${name}`));
      const url = databaseUrl(serverUrl, name);
      await migrate(url, { info: () => {} });
      return url;
    },
    async dropDatabase(name) {
      await admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** A server somebody else runs (the test run's): no faults on it. */
export function existingServer(url: string): DatabaseServer {
  return { url, control: undefined, ...onServer(url), stop: async () => {} };
}

/** Start a server of the run's own in `dataDir`. */
export async function startOwnServer(dataDir: string): Promise<DatabaseServer> {
  const embedded = await startEmbeddedPostgres({ dataDir, logger: pino({ level: 'warn' }) });
  const port = new URL(embedded.url).port;
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200`;
  const postmasterPid = async () => Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  let stopped = false;
  const control: ServerControl = {
    async kill() {
      const pid = await postmasterPid();
      process.kill(pid, 'SIGKILL');
      const deadline = Date.now() + 10_000;
      while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    },
    async start() {
      await pgCtl(['start', '-w', '-t', '60', '-D', dataDir, '-l', path.join(dataDir, 'chaos-server.log'), '-o', options]);
    },
    async restartFast() {
      await pgCtl(['restart', '-w', '-t', '60', '-m', 'fast', '-D', dataDir, '-l', path.join(dataDir, 'chaos-server.log'), '-o', options]);
    },
    async ensureRunning() {
      const running = await postmasterPid().then(alive, () => false);
      if (!running) await control.start();
    },
  };
  return {
    url: embedded.url,
    control,
    ...onServer(embedded.url),
    async stop() {
      if (stopped) return;
      stopped = true;
      // The embedded package's handle knows only the first postmaster; pg_ctl stops whichever runs.
      await pgCtl(['stop', '-w', '-m', 'fast', '-D', dataDir]).catch(() => embedded.stop());
    },
  };
}
