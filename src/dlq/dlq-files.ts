import { fsyncDirectory, removeFileDurably, writeFileDurably } from '../fsync-directory.ts';
import { readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseRecord, serialiseRecord, type DeadLetterRecord } from './dead-letter-record.ts';

/**
 * The dead-letter directory on disk: append-only NDJSON files named `dlq-<time>-<seq>.ndjson`,
 * read in name order. A re-drive claims a file by renaming it to `<name>.redrive` before reading
 * it (so the service's next append notices and moves on to a new file), then puts back under the
 * original name only the records that still fail. A claimed file left by a crashed re-drive
 * still counts as dead letters, and the next re-drive puts it back first (recoverClaims).
 */
export const DLQ_PREFIX = 'dlq-';
export const DLQ_SUFFIX = '.ndjson';
export const CLAIM_SUFFIX = '.redrive';

export function deadLetterDirectory(dataDir: string): string {
  return path.join(dataDir, 'dlq');
}

export function deadLetterFileName(nowMs: number, sequence: number): string {
  const time = new Date(nowMs).toISOString().replace(/[:.]/g, '-');
  return `${DLQ_PREFIX}${time}-${String(sequence).padStart(6, '0')}${DLQ_SUFFIX}`;
}

export interface DeadLetterFile {
  readonly path: string;
  readonly bytes: number;
  readonly records: readonly DeadLetterRecord[];
  /** Complete lines that are not a dead-letter record: reported, and kept verbatim by a re-drive. */
  readonly corruptLines: readonly { readonly lineNumber: number; readonly text: string }[];
  /** A last line without its newline: an append cut short by a crash. Skipped, reported. */
  readonly tornTail: string | null;
}

export { fsyncDirectory };

async function readNames(directory: string): Promise<string[]> {
  try {
    return await readdir(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

const isDataName = (name: string) => name.startsWith(DLQ_PREFIX) && name.endsWith(DLQ_SUFFIX);
const isClaimName = (name: string) => name.startsWith(DLQ_PREFIX) && name.endsWith(DLQ_SUFFIX + CLAIM_SUFFIX);

/**
 * Every file holding dead letters, oldest first: the data files, and claimed files whose data
 * file is absent (a re-drive in progress or interrupted).
 */
export async function listDeadLetterFiles(directory: string): Promise<string[]> {
  const names = await readNames(directory);
  const data = new Set(names.filter(isDataName));
  const orphanClaims = names.filter((name) => isClaimName(name) && !data.has(name.slice(0, -CLAIM_SUFFIX.length)));
  const sortKey = (name: string) => (isClaimName(name) ? name.slice(0, -CLAIM_SUFFIX.length) : name);
  return [...data, ...orphanClaims]
    .sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0))
    .map((name) => path.join(directory, name));
}

export async function readDeadLetterFile(filePath: string): Promise<DeadLetterFile> {
  const text = await readFile(filePath, 'utf8');
  const lines = text.split('\n');
  const last = lines.pop()!; // '' when the file ends in a newline, as every complete append does
  const records: DeadLetterRecord[] = [];
  const corruptLines: { lineNumber: number; text: string }[] = [];
  lines.forEach((line, index) => {
    if (line.length === 0) return;
    const record = parseRecord(line);
    if (record) records.push(record);
    else corruptLines.push({ lineNumber: index + 1, text: line });
  });
  let tornTail: string | null = null;
  if (last.length > 0) {
    // Cut just before its newline, a line can still be whole; anything else is a torn append.
    const record = parseRecord(last);
    if (record) records.push(record);
    else tornTail = last;
  }
  return { path: filePath, bytes: Buffer.byteLength(text), records, corruptLines, tornTail };
}

/** Every dead-letter file's records, in file name order then line order. */
export async function readDeadLetterFiles(directory: string): Promise<DeadLetterFile[]> {
  const files: DeadLetterFile[] = [];
  for (const filePath of await listDeadLetterFiles(directory)) {
    try {
      files.push(await readDeadLetterFile(filePath));
    } catch (error) {
      // A claimed file can be renamed away between the listing and the read: it is elsewhere now.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return files;
}

/** Counts for dashboards and the CLI: files, complete lines (records), and bytes on disk. */
export async function countDeadLetters(directory: string): Promise<{ files: number; records: number; bytes: number }> {
  let files = 0;
  let records = 0;
  let bytes = 0;
  for (const filePath of await listDeadLetterFiles(directory)) {
    let text: Buffer;
    try {
      text = await readFile(filePath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    files += 1;
    bytes += text.length;
    for (let at = text.indexOf(10); at >= 0; at = text.indexOf(10, at + 1)) records += 1;
  }
  return { files, records, bytes };
}

/**
 * Replace `filePath` atomically with `records` followed by `keptLines` (verbatim lines, e.g.
 * corrupt ones): write a temporary file, fsync it, rename it over, fsync the directory. With
 * nothing to keep, the file is removed instead.
 */
export async function rewriteDeadLetterFile(
  filePath: string,
  records: readonly DeadLetterRecord[],
  keptLines: readonly string[] = [],
): Promise<void> {
  if (records.length === 0 && keptLines.length === 0) await removeFileDurably(filePath);
  else await writeFileDurably(filePath, records.map(serialiseRecord).join('') + keptLines.map((line) => `${line}\n`).join(''));
}

/** Rename a data file to its claimed name; undefined when it is gone already. */
export async function claimDeadLetterFile(filePath: string): Promise<string | undefined> {
  const claimedPath = `${filePath}${CLAIM_SUFFIX}`;
  try {
    await rename(filePath, claimedPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  await fsyncDirectory(path.dirname(filePath));
  return claimedPath;
}

/** The data file a claimed file belongs to. */
export function unclaimedPath(claimedPath: string): string {
  return claimedPath.endsWith(CLAIM_SUFFIX) ? claimedPath.slice(0, -CLAIM_SUFFIX.length) : claimedPath;
}

/**
 * Undo the claims of an interrupted re-drive: a claimed file whose data file exists was already
 * rewritten and is removed; one whose data file is absent is renamed back, to be replayed whole.
 * Temporary files of an interrupted rewrite are removed. Call it holding the re-drive lock.
 */
export async function recoverClaims(directory: string): Promise<number> {
  const names = await readNames(directory);
  for (const name of names.filter((n) => n.startsWith(DLQ_PREFIX) && n.endsWith(`${DLQ_SUFFIX}.tmp`))) {
    await rm(path.join(directory, name), { force: true });
  }
  const claims = names.filter(isClaimName);
  for (const name of claims) {
    const claimedPath = path.join(directory, name);
    const dataPath = unclaimedPath(claimedPath);
    const rewritten = await stat(dataPath).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return false;
        throw error;
      },
    );
    if (rewritten) await rm(claimedPath, { force: true });
    else await rename(claimedPath, dataPath);
  }
  if (claims.length > 0) await fsyncDirectory(directory);
  return claims.length;
}
