import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** fsync a directory, so a file created, renamed or removed in it survives a crash. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Write `text` as the whole of `filePath`, crash-safely: into `<filePath>.tmp` (mode 0600),
 * fsynced, renamed over `filePath`, its directory fsynced. A crash leaves the old file or the new
 * one, never a torn one (at most a stray `.tmp`, which the next write replaces).
 */
export async function writeFileDurably(filePath: string, text: string): Promise<void> {
  const temporaryPath = `${filePath}.tmp`;
  const handle = await open(temporaryPath, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporaryPath, filePath);
  await fsyncDirectory(path.dirname(filePath));
}

/** Remove `filePath` (if it is there) and fsync its directory, so the removal survives a crash. */
export async function removeFileDurably(filePath: string): Promise<void> {
  await rm(filePath, { force: true });
  await fsyncDirectory(path.dirname(filePath));
}
