import { rename, rm } from 'node:fs/promises';
import { PoisonSplittingSink, type DeadLetterWriter } from '../sink/poison-splitting-sink.ts';
import type { Sink } from '../sink/sink.ts';
import { describeError, toQueuedEvent, type DeadLetterRecord } from './dead-letter-record.ts';
import {
  claimDeadLetterFile,
  fsyncDirectory,
  listDeadLetterFiles,
  readDeadLetterFile,
  recoverClaims,
  rewriteDeadLetterFile,
} from './dlq-files.ts';
import { acquireRedriveLock } from './redrive-lock.ts';
import { IngestInternalError } from '../internal-errors.ts';

export interface RedriveOptions {
  /** `DATA_DIR/dlq`. */
  readonly directory: string;
  /**
   * Where to write. Give it a plain PostgresCopySink (with the service's ROLLUPS and AUDIT_CHAIN settings): its ON
   * CONFLICT DO NOTHING is what makes a second run store nothing twice, and count nothing twice. (Events a decorated sink reports as dead-lettered are in its
   * DLQ again; they count as still failing and are not kept twice.)
   */
  readonly sink: Sink;
  readonly batchSize: number;
  readonly clock?: { now(): number };
  readonly signal?: AbortSignal;
  /** Called once per file, after it was settled: for progress output. */
  readonly onFile?: (report: FileReport) => void;
}

export interface RedriveResult {
  readonly files: number;
  /** Records written again. */
  readonly replayed: number;
  /** Newly inserted into `events`. */
  readonly stored: number;
  /** Already in `events` (an earlier run, or the service, stored them). */
  readonly duplicates: number;
  /** Refused again: still in the DLQ, with `attempts` and `error` updated. */
  readonly stillFailing: number;
  /** Lines that are not records: kept in their file, never replayed. */
  readonly corruptLines: number;
  /** Last lines cut short by a crash mid-append: skipped and dropped. */
  readonly tornLines: number;
}

export interface FileReport extends Omit<RedriveResult, 'files'> {
  readonly path: string;
}

export class RedriveInterruptedError extends IngestInternalError {
  /** What earlier files achieved; the file in progress was put back whole. */
  readonly partial: RedriveResult;
  constructor(message: string, partial: RedriveResult, cause: unknown) {
    super('DLQ_ERR_REDRIVE_INTERRUPTED', message, { cause });
    this.partial = partial;
  }
}

type Tally = { -readonly [K in keyof Omit<RedriveResult, 'files'>]: number };
const emptyTally = (): Tally => ({ replayed: 0, stored: 0, duplicates: 0, stillFailing: 0, corruptLines: 0, tornLines: 0 });

/**
 * Replay the dead-letter files into the sink, oldest first. Each file is claimed (renamed) while
 * it is replayed, then replaced by the records that still fail, or removed when none do. A batch
 * the database refuses is bisected (the service's own PoisonSplittingSink), so one bad record
 * does not hold good ones back and k bad ones in n cost O(k log n) writes.
 * Only a permanent failure (failure-class.ts: the database refused the data) is blamed on records;
 * any other (database down, timeout, missing migration, abort) stops the run with
 * RedriveInterruptedError, and the file in progress is put back whole: replaying it is harmless.
 */
export async function redrive(options: RedriveOptions): Promise<RedriveResult> {
  const { directory } = options;
  const total = emptyTally();
  let files = 0;
  if ((await listDeadLetterFiles(directory)).length === 0) return { files, ...total };
  const release = await acquireRedriveLock(directory);
  try {
    await recoverClaims(directory);
    for (const filePath of await listDeadLetterFiles(directory)) {
      const claimedPath = await claimDeadLetterFile(filePath);
      if (claimedPath === undefined) continue;
      let report: FileReport;
      try {
        report = await redriveFile(filePath, claimedPath, options);
      } catch (error) {
        await rename(claimedPath, filePath);
        await fsyncDirectory(directory);
        const partial = { files, ...total };
        if (error instanceof RedriveInterruptedError) {
          throw new RedriveInterruptedError(error.message, partial, error.cause);
        }
        throw error;
      }
      await rm(claimedPath, { force: true });
      await fsyncDirectory(directory);
      files += 1;
      for (const key of Object.keys(total) as (keyof Tally)[]) total[key] += report[key];
      options.onFile?.(report);
    }
  } finally {
    await release();
  }
  return { files, ...total };
}

async function redriveFile(filePath: string, claimedPath: string, options: RedriveOptions): Promise<FileReport> {
  const file = await readDeadLetterFile(claimedPath);
  const tally = emptyTally();
  tally.corruptLines = file.corruptLines.length;
  tally.tornLines = file.tornTail === null ? 0 : 1;
  const remaining: DeadLetterRecord[] = [];
  const batchSize = Math.max(1, options.batchSize);
  for (let start = 0; start < file.records.length; start += batchSize) {
    const batch = file.records.slice(start, start + batchSize);
    remaining.push(...(await writeBatch(batch, options, tally)));
  }
  await rewriteDeadLetterFile(filePath, remaining, file.corruptLines.map((line) => line.text));
  return { path: filePath, ...tally };
}

/**
 * Writes a batch through the same bisecting isolation the service uses (PoisonSplittingSink): a
 * batch the database refuses is halved until the refused records are alone, and every other
 * record is stored. Resolves with the records that still fail, updated.
 */
async function writeBatch(batch: readonly DeadLetterRecord[], options: RedriveOptions, tally: Tally): Promise<DeadLetterRecord[]> {
  const signal = options.signal ?? new AbortController().signal;
  const nowMs = () => (options.clock ?? { now: () => Date.now() }).now();
  const events = batch.map(toQueuedEvent);
  const recordOf = new Map(events.map((event, index) => [event, batch[index]!]));
  const stillFailing: DeadLetterRecord[] = [];
  // Isolated records go back into the file they came from, not into a new dead letter.
  const keepInFile: DeadLetterWriter = {
    write: (refused, error) => {
      for (const event of refused) {
        const record = recordOf.get(event)!;
        stillFailing.push({ ...record, attempts: record.attempts + 1, error: describeError(error), last_redrive_at: new Date(nowMs()).toISOString() });
      }
      return Promise.resolve();
    },
  };
  try {
    const result = await new PoisonSplittingSink(options.sink, { deadLetter: keepInFile }).write(events, { signal });
    tally.replayed += batch.length;
    tally.stored += result.inserted;
    tally.duplicates += batch.length - result.inserted - result.deadLettered.length;
    tally.stillFailing += result.deadLettered.length;
    return stillFailing;
  } catch (error) {
    const { sqlstate, message } = describeError(error);
    throw new RedriveInterruptedError(
      `the re-drive stopped: writing to the database failed for a reason that is not about the records (${sqlstate ?? 'no SQLSTATE'}: ${message}); nothing was lost. Check that the database is up, reachable and migrated, then run it again`,
      { files: 0, ...tally },
      error,
    );
  }
}
