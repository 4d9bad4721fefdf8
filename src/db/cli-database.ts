import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { embeddedUrl, readEmbeddedSecret, startEmbeddedPostgres } from './embedded-postgres.ts';
import { migrate } from './migrate.ts';

export interface CliDatabase {
  readonly url: string;
  /** Stop what this call started (nothing when it used DATABASE_URL or a running service's server). */
  close(): Promise<void>;
}

/**
 * The database a command-line tool should use, the way the service finds it: DATABASE_URL; else
 * the embedded server of a service running on the same DATA_DIR; else the embedded server
 * started just for this command (and stopped after it). Migrations are applied in the last case
 * only: a command never migrates a database the service owns. The embedded server's password is
 * the secret in DATA_DIR/postgres.secret (so the tool needs the user that can read it). A tool
 * never takes the service's DATA_DIR lock: it works beside a running service.
 */
export async function openCliDatabase(config: Pick<Config, 'databaseUrl' | 'dataDir'>, logger: Logger): Promise<CliDatabase> {
  if (config.databaseUrl) return { url: config.databaseUrl, close: async () => {} };
  const dataDir = path.join(config.dataDir, 'postgres');
  const runningPort = await runningEmbeddedPort(dataDir);
  if (runningPort !== undefined) return { url: embeddedUrl(runningPort, await readEmbeddedSecret(dataDir)), close: async () => {} };
  const embedded = await startEmbeddedPostgres({ dataDir, logger });
  await migrate(embedded.url, logger);
  return { url: embedded.url, close: () => embedded.stop() };
}

/** The port of the embedded server running on `dataDir`, from its postmaster.pid, if it is alive. */
async function runningEmbeddedPort(dataDir: string): Promise<number | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
    return port;
  } catch {
    return undefined;
  }
}
