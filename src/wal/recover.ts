import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { scanSegment } from './record-format.ts';
import { fsyncDirectory, listSegments, SEGMENT_SUFFIX } from './segment-files.ts';
import type { ExistingSegment } from './write-ahead-log.ts';

export interface RecoveredRecord {
  readonly seq: number;
  readonly payload: Buffer;
}

export interface Recovery {
  readonly segments: ExistingSegment[];
  /** Every record found, oldest first: replayed through the batcher (stored ones come back as duplicates). */
  readonly records: RecoveredRecord[];
  readonly nextSeq: number;
  /** Segments whose last record was cut short by a crash mid-append (truncated away). */
  readonly tornTails: number;
  /** Corrupt byte ranges skipped and newly copied to the quarantine directory (one already kept by an earlier start is not reported again). */
  readonly quarantined: { readonly file: string; readonly bytes: number }[];
}

export function quarantineDirectory(walDirectory: string): string {
  return path.join(walDirectory, 'quarantine');
}

/**
 * Read the log left by the previous run. A torn final record is truncated (it was never
 * acknowledged: its fsync never returned); a corrupt record elsewhere is skipped, kept in the
 * quarantine directory for inspection, and reported; recovery itself never fails on the log's
 * content, so the service cannot crash-loop on its own log.
 */
export async function recoverWal(directory: string): Promise<Recovery> {
  const names = await listSegments(directory);
  const segments: ExistingSegment[] = [];
  const records: RecoveredRecord[] = [];
  const quarantined: { file: string; bytes: number }[] = [];
  let tornTails = 0;
  let nextSeq = 1;
  for (const [index, name] of names.entries()) {
    const filePath = path.join(directory, name);
    const buffer = await readFile(filePath);
    const scan = scanSegment(buffer);
    if (scan.tornTail) {
      // Only the newest segment can end in an interrupted append; a bad tail of an older one is
      // corruption, kept for inspection before it is cut off.
      if (index < names.length - 1) {
        const kept = await quarantine(directory, name, buffer, scan.validBytes, buffer.length - scan.validBytes);
        if (kept) quarantined.push(kept);
      } else {
        tornTails += 1;
      }
      await truncateFile(filePath, scan.validBytes);
    }
    for (const range of scan.corruptRanges) {
      const kept = await quarantine(directory, name, buffer, range.offset, range.bytes);
      if (kept) quarantined.push(kept);
    }
    const nameSeq = Number(name.slice(0, -SEGMENT_SUFFIX.length));
    if (Number.isSafeInteger(nameSeq)) nextSeq = Math.max(nextSeq, nameSeq);
    if (scan.records.length === 0) {
      await rm(filePath, { force: true });
      continue;
    }
    for (const record of scan.records) {
      records.push({ seq: record.seq, payload: Buffer.from(record.payload) });
      nextSeq = Math.max(nextSeq, record.seq + 1);
    }
    segments.push({
      name,
      firstSeq: scan.records[0]!.seq,
      lastSeq: scan.records.at(-1)!.seq,
      records: scan.records.length,
      bytes: scan.validBytes,
    });
  }
  return { segments, records, nextSeq, tornTails, quarantined };
}

async function truncateFile(filePath: string, bytes: number): Promise<void> {
  const handle = await open(filePath, 'r+');
  try {
    await handle.truncate(bytes);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

/** Copy a corrupt range aside; undefined when an earlier start already did (the segment still holds it until it settles). */
async function quarantine(directory: string, segment: string, buffer: Buffer, offset: number, bytes: number): Promise<{ file: string; bytes: number } | undefined> {
  const target = quarantineDirectory(directory);
  await mkdir(target, { recursive: true });
  const file = path.join(target, `${segment}.${offset}.bin`);
  let handle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  }
  try {
    await handle.writeFile(buffer.subarray(offset, offset + bytes));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsyncDirectory(target);
  return { file, bytes };
}
