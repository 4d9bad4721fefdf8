import { mkdir, open, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { serialiseRecord, type DeadLetterRecord } from './dead-letter-record.ts';
import { countDeadLetters, deadLetterFileName, fsyncDirectory } from './dlq-files.ts';
import { IngestInternalError } from '../internal-errors.ts';

export { toDeadLetterRecord, type DeadLetterRecord } from './dead-letter-record.ts';

export const DEFAULT_DLQ_MAX_FILE_BYTES = 64 * 1024 * 1024;
/** How often one append moves on to a fresh file because a re-drive claimed the current one. */
const MAX_CLAIMED_RETRIES = 5;

export class DeadLetterWriteError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('DLQ_ERR_WRITE', message, options);
  }
}

export interface DeadLetterQueueOptions {
  /** `DATA_DIR/dlq`; created on first use. */
  readonly directory: string;
  /** A file is rotated before an append would take it past this size. Default 64 MiB. */
  readonly maxFileBytes?: number;
  readonly clock: { now(): number };
}

interface OpenFile {
  readonly path: string;
  readonly handle: FileHandle;
  readonly inode: number;
  size: number;
}

/**
 * The append side of the dead-letter queue. Each append writes one NDJSON line per record to the
 * current file and fsyncs it (and the directory, when it created a file) before it resolves, so a
 * batch is settled only once its dead letters are durable. Appends run one at a time, in call
 * order. A failure rejects with DeadLetterWriteError and leaves `healthy` false until an append
 * succeeds. A failed append is cut back off the file, so every file is a run of whole lines.
 */
export class DeadLetterQueue {
  readonly directory: string;
  readonly maxFileBytes: number;
  readonly #clock: { now(): number };
  #file: OpenFile | undefined;
  #sequence = 0;
  #tail: Promise<unknown> = Promise.resolve();
  #healthy = true;
  #lastError: DeadLetterWriteError | undefined;

  constructor(options: DeadLetterQueueOptions) {
    this.directory = path.resolve(options.directory);
    this.maxFileBytes = options.maxFileBytes ?? DEFAULT_DLQ_MAX_FILE_BYTES;
    this.#clock = options.clock;
  }

  /** False from a failed write until the next successful one: report it on /readyz. */
  get healthy(): boolean {
    return this.#healthy;
  }

  /** The most recent write failure, kept after recovery for diagnosis. */
  get lastError(): DeadLetterWriteError | undefined {
    return this.#lastError;
  }

  append(records: readonly DeadLetterRecord[]): Promise<void> {
    return this.#serialised(() => this.#append(records.map(serialiseRecord), `write ${records.length} dead-letter records`));
  }

  /**
   * Prove the directory is writable now: create it, write and fsync a probe file, remove it.
   * Call it at start-up so an unwritable DLQ fails readiness before the first dead letter.
   */
  probe(): Promise<void> {
    return this.#serialised(async () => {
      try {
        await this.#ensureDirectory();
        const probePath = path.join(this.directory, `.probe-${process.pid}`);
        const handle = await open(probePath, 'w', 0o600);
        try {
          await handle.writeFile('probe\n');
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rm(probePath, { force: true });
        this.#healthy = true;
      } catch (error) {
        throw this.#failed('write a probe file in', error);
      }
    });
  }

  /** Files, records (complete lines) and bytes in the directory. Reads every file: not per scrape. */
  stats(): Promise<{ files: number; records: number; bytes: number }> {
    return countDeadLetters(this.directory);
  }

  /** Waits for pending appends, then closes the current file. */
  async close(): Promise<void> {
    await this.#serialised(() => this.#abandonFile());
  }

  #serialised<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => {});
    return result;
  }

  async #append(lines: readonly string[], what: string): Promise<void> {
    if (lines.length === 0) return;
    try {
      let index = 0;
      let claimedRetries = 0;
      while (index < lines.length) {
        const file = await this.#fileWithRoomFor(Buffer.byteLength(lines[index]!));
        // As many lines as fit; at least one, so a line larger than maxFileBytes gets a file of its own.
        let chunk = '';
        let chunkBytes = 0;
        const start = index;
        while (index < lines.length) {
          const lineBytes = Buffer.byteLength(lines[index]!);
          if (index > start && file.size + chunkBytes + lineBytes > this.maxFileBytes) break;
          chunk += lines[index]!;
          chunkBytes += lineBytes;
          index += 1;
        }
        await this.#write(file, chunk, chunkBytes);
        if (!(await this.#stillLinked(file))) {
          // A re-drive claimed the file, perhaps after reading it: write these lines again elsewhere.
          // A line it did read as well is replayed twice at worst, which the sink's ON CONFLICT absorbs.
          await this.#abandonFile();
          if (++claimedRetries > MAX_CLAIMED_RETRIES) throw new Error('the file was claimed by a re-drive on every try');
          index = start;
        }
      }
      this.#healthy = true;
    } catch (error) {
      throw this.#failed(what, error);
    }
  }

  async #fileWithRoomFor(lineBytes: number): Promise<OpenFile> {
    const current = this.#file;
    if (current && (current.size === 0 || current.size + lineBytes <= this.maxFileBytes)) return current;
    await this.#abandonFile();
    await this.#ensureDirectory();
    for (;;) {
      const filePath = path.join(this.directory, deadLetterFileName(this.#clock.now(), this.#sequence++));
      let handle: FileHandle;
      try {
        handle = await open(filePath, 'ax', 0o600);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue; // another writer's name: take the next
        throw error;
      }
      try {
        const { ino } = await handle.stat();
        await fsyncDirectory(this.directory);
        this.#file = { path: filePath, handle, inode: ino, size: 0 };
        return this.#file;
      } catch (error) {
        await handle.close().catch(() => {});
        throw error;
      }
    }
  }

  async #write(file: OpenFile, chunk: string, chunkBytes: number): Promise<void> {
    try {
      await file.handle.appendFile(chunk);
    } catch (error) {
      // Part of the chunk may be on disk (a full disk): cut it off so the file ends in a whole line.
      // If that fails too, the file is left as it is (a torn last line, which readers skip) and abandoned.
      const truncated = await file.handle.truncate(file.size).then(() => true, () => false);
      if (!truncated) await this.#abandonFile();
      throw error;
    }
    try {
      await file.handle.sync();
    } catch (error) {
      // After a failed fsync the state of the file is unknown: never append to it again.
      await file.handle.truncate(file.size).catch(() => {});
      await this.#abandonFile();
      throw error;
    }
    file.size += chunkBytes;
  }

  /** True while the open file is still the one under its name (a re-drive has not claimed it). */
  async #stillLinked(file: OpenFile): Promise<boolean> {
    try {
      return (await stat(file.path)).ino === file.inode;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }

  async #abandonFile(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    await file?.handle.close().catch(() => {});
  }

  async #ensureDirectory(): Promise<void> {
    const created = await mkdir(this.directory, { recursive: true });
    if (created === undefined) return;
    // Make each new directory's entry durable, from the innermost up to the first one created.
    for (let directory = this.directory; directory !== path.dirname(directory); directory = path.dirname(directory)) {
      await fsyncDirectory(path.dirname(directory));
      if (directory === path.resolve(created)) break;
    }
  }

  #failed(what: string, error: unknown): DeadLetterWriteError {
    const reason = (error as NodeJS.ErrnoException | null)?.code ?? (error instanceof Error ? error.message : String(error));
    const wrapped = new DeadLetterWriteError(
      `could not ${what} to ${this.directory} (${reason}); dead letters are not durable until this is fixed: free disk space or make the directory writable`,
      { cause: error },
    );
    this.#healthy = false;
    this.#lastError = wrapped;
    return wrapped;
  }
}
