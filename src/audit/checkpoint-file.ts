import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { fsyncDirectory } from '../fsync-directory.ts';
import { PendingCheckpoints, type CheckpointDestination, type CheckpointObserver, type SignedCheckpoint } from './checkpoint-destination.ts';

export interface FileDestinationOptions {
  readonly file: string;
  readonly logger: Pick<Logger, 'error'>;
  readonly observer?: CheckpointObserver;
}

/**
 * AUDIT_CHECKPOINT_FILE: each trigger's lines appended with one write (O_APPEND) and an fdatasync.
 * Several replicas may append to one file on a local file system (each write lands whole) or each
 * keep its own. A failed append keeps its lines (the newest per tenant) and writes them with the
 * next trigger's.
 */
export class FileCheckpointDestination implements CheckpointDestination {
  readonly name = 'file';
  readonly #options: FileDestinationOptions;
  readonly #handle: FileHandle;
  readonly #pending = new PendingCheckpoints();
  #writingEvents = 0;

  private constructor(options: FileDestinationOptions, handle: FileHandle) {
    this.#options = options;
    this.#handle = handle;
  }

  static async open(options: FileDestinationOptions): Promise<FileCheckpointDestination> {
    const handle = await open(options.file, 'a', 0o644);
    await fsyncDirectory(path.dirname(options.file));
    return new FileCheckpointDestination(options, handle);
  }

  get unexportedEvents(): number {
    return this.#pending.events + this.#writingEvents;
  }

  /** Called one at a time (the writer chains its flushes). */
  async export(lines: readonly SignedCheckpoint[]): Promise<void> {
    let superseded = 0;
    for (const line of lines) superseded += this.#pending.add(line);
    if (superseded > 0) this.#options.observer?.superseded('file', superseded);
    if (this.#pending.size === 0) return;
    const batch = this.#pending.take();
    this.#writingEvents = batch.reduce((sum, line) => sum + line.events, 0);
    try {
      await this.#handle.write(batch.map((line) => line.text).join(''));
      await this.#handle.datasync();
      this.#writingEvents = 0;
      this.#options.observer?.exported('file', 'written');
    } catch (error) {
      this.#writingEvents = 0;
      for (const line of batch) this.#pending.add(line);
      this.#options.observer?.exported('file', 'failed');
      this.#options.logger.error(
        { err: error, file: this.#options.file, tenants: batch.length },
        'could not append signed audit checkpoints; trying again at the next checkpoint. Check that AUDIT_CHECKPOINT_FILE is writable and its disk has room',
      );
    }
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}
