import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';

/** A segment is named by the sequence number of its first record, zero-padded so names sort. */
export const SEGMENT_SUFFIX = '.wal';

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}${SEGMENT_SUFFIX}`;
}

export function walDirectory(dataDir: string): string {
  return path.join(dataDir, 'wal');
}

export async function listSegments(directory: string): Promise<string[]> {
  await mkdir(directory, { recursive: true });
  return (await readdir(directory)).filter((name) => name.endsWith(SEGMENT_SUFFIX)).sort();
}

export { fsyncDirectory } from '../fsync-directory.ts';
