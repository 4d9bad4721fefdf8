/**
 * One service per DATA_DIR. The write-ahead log, the dead-letter queue, the spill files and the
 * embedded PostgreSQL cluster under DATA_DIR each assume a single owner; a second service on the
 * same directory would stop the first one's database and write into its log.
 *
 * The lock is a kernel lock on DATA_DIR/service.lock (an open-file-description lock on Linux,
 * flock elsewhere, through fs-native-extensions), held for the life of the process. The kernel
 * drops it when the holder dies, SIGKILL included, so a crashed service never leaves a stale lock
 * behind and a restart on the same directory needs no timeout or clean-up. The file also says
 * who holds it (pid, host, process start time), for the message the next instance prints; that
 * text is informative only: whether the lock is held is the kernel's answer, never the file's.
 *
 * The command-line tools (keys, dlq) do not take this lock: they work beside a running service.
 */
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { tryLock, unlock } from 'fs-native-extensions';
import { IngestInternalError } from './internal-errors.ts';

export const LOCK_FILE_NAME = 'service.lock';

/** Who holds a lock, as its holder wrote it. */
export interface DataDirLockHolder {
  readonly pid: number;
  readonly host: string;
  /** When the holding process started (ISO 8601). */
  readonly startedAt: string;
}

export interface DataDirLock {
  readonly directory: string;
  readonly file: string;
  /** Give the lock up (last, after everything under DATA_DIR is closed). Idempotent. */
  release(): Promise<void>;
}

/** Another process (or another owner in this one) holds the lock. */
export class DataDirLockedError extends IngestInternalError {
  readonly directory: string;
  readonly holder: DataDirLockHolder | undefined;
  constructor(directory: string, holder: DataDirLockHolder | undefined) {
    const who = holder ? `pid ${holder.pid} on host ${holder.host}, started ${holder.startedAt}` : 'a process that has not yet written its name';
    super(
      'DATA_DIR_ERR_LOCKED',
      `DATA_DIR ${directory} is in use by another ingest service (${who}); only one service may run on a DATA_DIR. ` +
        'Stop that one first, or give this one a DATA_DIR of its own',
    );
    this.directory = directory;
    this.holder = holder;
  }
}

/** The lock file could not be created or opened (DATA_DIR missing, not a directory, not writable). */
export class DataDirLockError extends IngestInternalError {
  readonly directory: string;
  constructor(directory: string, cause: unknown) {
    super('DATA_DIR_ERR_LOCK_FAILED', `cannot create the lock file ${path.join(directory, LOCK_FILE_NAME)}: ${describe(cause)}. Make DATA_DIR a writable directory`, { cause });
    this.directory = directory;
  }
}

/** Directories whose lock this process holds (resolved paths). */
const heldHere = new Set<string>();

/**
 * Take the lock on `directory` (created if missing) or throw DataDirLockedError naming the holder.
 * Never waits: a second instance is told at once.
 */
// eslint-disable-next-line @typescript-eslint/require-await -- async so every failure is a rejection
export async function acquireDataDirLock(directory: string): Promise<DataDirLock> {
  const resolved = path.resolve(directory);
  const file = path.join(resolved, LOCK_FILE_NAME);
  const fd = openLockFile(resolved, file);
  let granted: boolean;
  try {
    granted = tryLock(fd);
  } catch (error) {
    closeSync(fd);
    throw new DataDirLockError(directory, error);
  }
  if (!granted) {
    closeSync(fd);
    throw new DataDirLockedError(directory, readHolder(file));
  }
  const holder: DataDirLockHolder = { pid: process.pid, host: hostname(), startedAt: new Date(performance.timeOrigin).toISOString() };
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${JSON.stringify(holder)}\n`, 0);
  } catch (error) {
    closeSync(fd);
    throw new DataDirLockError(directory, error);
  }
  heldHere.add(resolved);
  let released = false;
  return {
    directory,
    file,
    // eslint-disable-next-line @typescript-eslint/require-await -- the port is async; the work is not
    async release() {
      if (released) return;
      released = true;
      heldHere.delete(resolved);
      // Leave the file (removing it would let a third process lock a new inode while a second
      // holds the old one); empty it so nobody reads a departed holder's name from it.
      try {
        ftruncateSync(fd, 0);
        unlock(fd);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/**
 * Whether a live service holds the lock on `directory`, without keeping it: 'free',
 * 'this-process', or the holder (as far as its file says). A probe takes a shared lock for an
 * instant, so a service starting at that very moment could be refused once; callers use it only
 * before doing something drastic (stopping a database).
 */
export function inspectDataDirLock(directory: string): 'free' | 'this-process' | DataDirLockHolder | 'unknown-holder' {
  const resolved = path.resolve(directory);
  if (heldHere.has(resolved)) return 'this-process';
  const file = path.join(resolved, LOCK_FILE_NAME);
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY);
  } catch {
    return 'free'; // no lock file: no service has ever run here
  }
  try {
    if (tryLock(fd, { shared: true })) {
      unlock(fd);
      return 'free';
    }
  } finally {
    closeSync(fd);
  }
  return readHolder(file) ?? 'unknown-holder';
}

function openLockFile(directory: string, file: string): number {
  try {
    mkdirSync(directory, { recursive: true });
    return openSync(file, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (error) {
    throw new DataDirLockError(directory, error);
  }
}

function readHolder(file: string): DataDirLockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<DataDirLockHolder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string' || typeof parsed.startedAt !== 'string') return undefined;
    return { pid: parsed.pid, host: parsed.host, startedAt: parsed.startedAt };
  } catch {
    return undefined;
  }
}

function describe(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return typeof code === 'string' ? code : String(message ?? error);
}
