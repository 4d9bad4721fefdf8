import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { scanSegment, type ParsedRecord } from './record-format.ts';
import { fsyncDirectory, listSegments, SEGMENT_SUFFIX } from './segment-files.ts';
import type { ExistingSegment } from './write-ahead-log.ts';

export interface RecoveredRecord {
  readonly seq: number;
  readonly payload: Buffer;
}

export interface Recovery {
  readonly segments: ExistingSegment[];
  /** Every event record found and not cancelled, oldest first: replayed through the batcher (stored ones come back as duplicates). */
  readonly records: RecoveredRecord[];
  readonly nextSeq: number;
  /** Segments whose last record was cut short by a crash mid-append (truncated away). */
  readonly tornTails: number;
  /** Corrupt byte ranges skipped and newly copied to the quarantine directory (one already kept by an earlier start is not reported again). */
  readonly quarantined: { readonly file: string; readonly bytes: number }[];
  /** Event records skipped because a cancellation record withdrew them (their requests were refused). */
  readonly cancelled: number;
}

export function quarantineDirectory(walDirectory: string): string {
  return path.join(walDirectory, 'quarantine');
}

/**
 * Read the log left by the previous run. A torn final record is truncated (it was never
 * acknowledged: its fsync never returned); a corrupt record (a damaged final one included) is
 * skipped, kept in the quarantine directory for inspection, and reported; an event record that a
 * cancellation record withdrew (its request was refused) is never replayed. Recovery itself never
 * fails on the log's content, so the service cannot crash-loop on its own log.
 */
export async function recoverWal(directory: string): Promise<Recovery> {
  const names = await listSegments(directory);
  const scanned: { name: string; records: ParsedRecord[]; bytes: number }[] = [];
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
    for (const record of scan.records) nextSeq = Math.max(nextSeq, record.seq + 1);
    scanned.push({ name, records: scan.records, bytes: scan.validBytes });
  }

  const cancelled = new Set<number>();
  for (const segment of scanned) for (const record of segment.records) for (const seq of record.cancels ?? []) cancelled.add(seq);
  const segmentOfEvent = new Map<number, string>();
  for (const segment of scanned) for (const record of segment.records) if (!record.cancels) segmentOfEvent.set(record.seq, segment.name);

  const segments: ExistingSegment[] = [];
  const records: RecoveredRecord[] = [];
  let skipped = 0;
  for (const segment of scanned) {
    let live = 0;
    const dependsOn = new Set<string>();
    for (const record of segment.records) {
      if (record.cancels) {
        for (const seq of record.cancels) {
          const holder = segmentOfEvent.get(seq);
          if (holder !== undefined && holder !== segment.name) dependsOn.add(holder);
        }
      } else if (cancelled.has(record.seq)) {
        skipped += 1;
      } else {
        live += 1;
        records.push({ seq: record.seq, payload: Buffer.from(record.payload) });
      }
    }
    segments.push({
      name: segment.name,
      firstSeq: segment.records[0]!.seq,
      lastSeq: segment.records.at(-1)!.seq,
      records: live,
      bytes: segment.bytes,
      dependsOn: [...dependsOn],
    });
  }
  return { segments, records, nextSeq, tornTails, quarantined, cancelled: skipped };
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
