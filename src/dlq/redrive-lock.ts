import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { IngestInternalError } from '../internal-errors.ts';

export const REDRIVE_LOCK_NAME = 'redrive.lock';

export class RedriveBusyError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('DLQ_ERR_REDRIVE_BUSY', message, options);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by someone else
  }
}

/**
 * One re-drive at a time per directory: `redrive.lock` holds the pid of the run that owns it.
 * A lock whose process is gone (a re-drive that crashed) is taken over. Resolves with `release`.
 */
export async function acquireRedriveLock(directory: string): Promise<() => Promise<void>> {
  const lockPath = path.join(directory, REDRIVE_LOCK_NAME);
  for (let attempt = 0; ; attempt += 1) {
    try {
      const handle = await open(lockPath, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      return () => rm(lockPath, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
      if (attempt > 0 || !(holder > 0) || isAlive(holder)) {
        throw new RedriveBusyError(
          `another re-drive (pid ${Number.isNaN(holder) ? 'unknown' : holder}) is running on ${directory}: wait for it to finish, or delete ${lockPath} if that process is gone`,
        );
      }
      await rm(lockPath, { force: true }); // its owner died mid-run; an unreadable lock is left to the operator
    }
  }
}
