import type { KeyObject } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.ts';
import { fsyncDirectory } from '../fsync-directory.ts';
import type { ChainHead } from './chain-writer.ts';
import { keyIdOf, signCheckpoint } from './checkpoints.ts';

export interface CheckpointWriterOptions {
  readonly file: string;
  readonly key: KeyObject;
  readonly clock: Clock;
  readonly logger: Pick<Logger, 'error' | 'info'>;
  /** Sign after this many chained events since the last checkpoint, ... */
  readonly everyEvents: number;
  /** ... or this long after the first of them; and at close(). */
  readonly intervalMs: number;
  /** Each append's result, and the chained events not yet covered by a written checkpoint. */
  readonly observe?: (result: 'written' | 'failed', unsignedEvents: number) => void;
}

/**
 * Keeps the newest committed head of each tenant this process appended to, and appends a signed
 * line per changed tenant to the checkpoint file (O_APPEND, one write per checkpoint, fdatasync)
 * every `everyEvents` events or `intervalMs`, and at close(). Several replicas may append to one
 * file on a local file system (each write lands whole) or each keep its own; the verifier reads
 * any number. A failed write is logged and retried at the next trigger: ingest never waits for it.
 */
export class CheckpointWriter {
  readonly #options: CheckpointWriterOptions;
  readonly #keyId: string;
  readonly #heads = new Map<string, ChainHead>();
  readonly #handle: FileHandle;
  #pendingEvents = 0;
  #timer: TimerHandle | undefined;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(options: CheckpointWriterOptions, handle: FileHandle) {
    this.#options = options;
    this.#handle = handle;
    this.#keyId = keyIdOf(options.key);
  }

  static async open(options: CheckpointWriterOptions): Promise<CheckpointWriter> {
    const handle = await open(options.file, 'a', 0o644);
    await fsyncDirectory(path.dirname(options.file));
    return new CheckpointWriter(options, handle);
  }

  /** Chained events recorded since the last written checkpoint (or the failed one that kept them). */
  get unsignedEvents(): number {
    return this.#pendingEvents;
  }

  /** The id of the public key that checks this writer's signatures. */
  get keyId(): string {
    return this.#keyId;
  }

  /** Heads the sink committed (in any order: two flush slots may finish out of order). */
  record(heads: readonly ChainHead[]): void {
    if (this.#closed) return;
    for (const head of heads) {
      const known = this.#heads.get(head.tenant);
      if (known === undefined || head.seq > known.seq) this.#heads.set(head.tenant, head);
      this.#pendingEvents += head.events;
    }
    if (this.#pendingEvents >= this.#options.everyEvents) void this.flush();
    else this.#timer ??= this.#options.clock.setTimeout(() => void this.flush(), this.#options.intervalMs);
  }

  /** Sign and append the changed heads now; resolves when they are on disk (or the write failed and was logged). */
  flush(): Promise<void> {
    if (this.#timer !== undefined) {
      this.#options.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#writing = this.#writing.then(() => this.#write());
    return this.#writing;
  }

  async #write(): Promise<void> {
    if (this.#heads.size === 0) return;
    const heads = [...this.#heads.values()];
    this.#heads.clear();
    const events = this.#pendingEvents;
    this.#pendingEvents = 0;
    const time = new Date(this.#options.clock.now()).toISOString();
    const text = heads.map((head) => `${JSON.stringify(signCheckpoint(this.#options.key, this.#keyId, head, time))}\n`).join('');
    try {
      await this.#handle.write(text);
      await this.#handle.datasync();
      this.#options.observe?.('written', this.#pendingEvents);
    } catch (error) {
      // Put them back (unless newer heads came meanwhile): the next trigger tries again.
      for (const head of heads) if (!this.#heads.has(head.tenant)) this.#heads.set(head.tenant, head);
      this.#pendingEvents += events;
      this.#options.observe?.('failed', this.#pendingEvents);
      this.#options.logger.error(
        { err: error, file: this.#options.file, tenants: heads.length },
        'could not append signed audit checkpoints; trying again at the next checkpoint. Check that AUDIT_CHECKPOINT_FILE is writable and its disk has room',
      );
    }
  }

  /** Resolves when the checkpoint being written (if any) is done. */
  idle(): Promise<void> {
    return this.#writing;
  }

  /** The last checkpoint (every head not yet signed), then the file is closed. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return this.#writing;
    this.#closed = true;
    await this.flush();
    await this.#handle.close();
  }
}
