import { open } from 'node:fs/promises';

/** fsync a directory, so a file created, renamed or removed in it survives a crash. */
export async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
