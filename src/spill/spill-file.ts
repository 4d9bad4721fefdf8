import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { queuedEventFromRow } from '../event/queued-event.ts';
import { writeFileDurably } from '../fsync-directory.ts';
import type { QueuedEvent } from '../event/queued-event.ts';

/**
 * The spill file: events that were accepted but not stored when the shutdown deadline passed.
 * One file per spill, holding the events' COPY rows (one per line, the id first), written to a temporary name,
 * fsynced, then renamed, so a file under its final name is always complete.
 */
export const SPILL_SUFFIX = '.spill';

export function spillDirectory(dataDir: string): string {
  return path.join(dataDir, 'spill');
}

export async function writeSpillFile(dataDir: string, events: readonly QueuedEvent[], nowMs: number): Promise<string> {
  const directory = spillDirectory(dataDir);
  await mkdir(directory, { recursive: true });
  const name = `${new Date(nowMs).toISOString().replace(/[:.]/g, '-')}-${randomUUID()}${SPILL_SUFFIX}`;
  const finalPath = path.join(directory, name);
  await writeFileDurably(finalPath, events.map((event) => event.row).join(''));
  return finalPath;
}

export interface SpillFile {
  readonly path: string;
  readonly events: readonly QueuedEvent[];
}

/** Every complete spill file, oldest first. Temporary files of an interrupted spill are ignored. */
export async function readSpillFiles(dataDir: string): Promise<SpillFile[]> {
  const directory = spillDirectory(dataDir);
  let names: string[];
  try {
    names = (await readdir(directory)).filter((name) => name.endsWith(SPILL_SUFFIX)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const files: SpillFile[] = [];
  for (const name of names) {
    const filePath = path.join(directory, name);
    const text = await readFile(filePath, 'utf8');
    const events = text
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => {
        const row = `${line}\n`;
        return queuedEventFromRow(row);
      });
    files.push({ path: filePath, events });
  }
  return files;
}

export async function removeSpillFile(filePath: string): Promise<void> {
  await rm(filePath, { force: true });
}
