import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WalFatalError, WalFullError } from './errors.ts';
import { encodeRecord } from './record-format.ts';
import { fsyncDirectory, segmentName } from './segment-files.ts';

export interface WalOptions {
  readonly directory: string;
  /** A new segment is started once the current one would pass this size. */
  readonly segmentMaxBytes: number;
  /** Appends are refused (WalFullError → 503) while unsettled segments take this much. */
  readonly maxBytes: number;
  readonly now: () => number;
  /** Per fsync: how long it took and how many records it made durable. */
  readonly onGroupCommit?: (durationMs: number, records: number) => void;
  /** A write or fsync failed: the process must stop acknowledging and exit. */
  readonly onFatal: (error: WalFatalError) => void;
  /** After a full disk, appends are refused for this long, then one is tried again. Default 1000. */
  readonly diskFullRetryMs?: number;
}

/** A segment left by an earlier run, with the records recovery replays from it. */
export interface ExistingSegment {
  readonly name: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly records: number;
  readonly bytes: number;
}

interface Segment {
  readonly name: string;
  readonly firstSeq: number;
  lastSeq: number;
  /** Records durable in this segment and not yet settled. */
  unsettled: number;
  bytes: number;
}

interface PendingRecord {
  readonly seq: number;
  readonly record: Buffer;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
}

export interface Appended {
  readonly seq: number;
  /** Resolves once the fsync covering this record has returned; never before. */
  readonly durable: Promise<void>;
}

/**
 * The write-ahead log: an event is appended before it is acknowledged, and its segment is removed
 * once every record in it is settled (stored, duplicate, or dead-lettered).
 *
 * Group commit: appends made while an fsync is running wait for the next one, and every record
 * written since the previous fsync is covered by one fdatasync, so the fsync cost is paid per
 * group, not per request (PostgreSQL's commit_delay, without the delay).
 *
 * Crash ordering: a segment is deleted only after all its records settled in PostgreSQL (or the
 * fsynced dead-letter queue). A crash before the deletion replays the segment; replayed events
 * are duplicates the sink skips, they settle again, and the segment goes. Nothing needs a
 * separate checkpoint file, so there is nothing to get out of step.
 */
export class WriteAheadLog {
  readonly #options: WalOptions;
  /** Oldest first; the last one is being appended to. */
  readonly #segments: Segment[] = [];
  #handle: FileHandle | undefined;
  #nextSeq: number;
  #pending: PendingRecord[] = [];
  #flushing: Promise<void> | undefined;
  #totalBytes = 0;
  /** When a write last failed for want of space (options.now() time), or undefined. */
  #diskFullAtMs: number | undefined;
  #failed: WalFatalError | undefined;
  #closed = false;
  /** Sequence numbers taken by appends whose write failed (disk full): never in a segment. */
  readonly #neverWritten = new Set<number>();

  private constructor(options: WalOptions, existing: readonly ExistingSegment[], nextSeq: number) {
    this.#options = options;
    this.#nextSeq = nextSeq;
    for (const segment of existing) {
      this.#segments.push({ name: segment.name, firstSeq: segment.firstSeq, lastSeq: segment.lastSeq, unsettled: segment.records, bytes: segment.bytes });
      this.#totalBytes += segment.bytes;
    }
  }

  /** Open for appending after recovery: `existing` are the recovered segments, kept until settled. */
  static async open(options: WalOptions, existing: readonly ExistingSegment[], nextSeq: number): Promise<WriteAheadLog> {
    const wal = new WriteAheadLog(options, existing, nextSeq);
    await wal.#startSegment(nextSeq);
    // Recovered segments with nothing to replay can go at once.
    await wal.#removeSettledSegments();
    return wal;
  }

  get bytes(): number {
    return this.#totalBytes;
  }

  get segments(): number {
    return this.#segments.length;
  }

  /** Why appends are refused right now, or undefined. */
  get refusing(): string | undefined {
    if (this.#failed) return 'write-ahead log failed';
    if (this.#diskFullAtMs !== undefined && this.#options.now() - this.#diskFullAtMs < (this.#options.diskFullRetryMs ?? 1000)) {
      return 'disk full';
    }
    if (this.#totalBytes >= this.#options.maxBytes) return 'WAL_MAX_BYTES reached';
    return undefined;
  }

  /** Append one event's payload; the returned promise resolves once it is on disk. */
  append(payload: Buffer | string): Appended {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new WalFullError('the write-ahead log is closed');
    const refusing = this.refusing;
    if (refusing) throw new WalFullError(`the write-ahead log refuses new events: ${refusing}`);
    const seq = this.#nextSeq++;
    const record = encodeRecord(seq, payload);
    this.#totalBytes += record.length;
    const durable = new Promise<void>((resolve, reject) => this.#pending.push({ seq, record, resolve, reject }));
    this.#flushing ??= this.#flushLoop();
    return { seq, durable };
  }

  /** Mark records settled; segments whose records are all settled are deleted. */
  settle(seqs: Iterable<number>): void {
    let emptied = false;
    for (const seq of seqs) {
      if (this.#neverWritten.delete(seq)) continue;
      const segment = this.#segmentOf(seq);
      if (!segment) continue;
      segment.unsettled -= 1;
      if (segment.unsettled === 0) emptied = true;
    }
    if (emptied) void this.#removeSettledSegments();
  }

  /**
   * Wait for pending appends, then close the current segment. When every record is settled (a
   * clean drain), every segment goes, so the next start has nothing to replay.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    await this.#handle?.close();
    this.#handle = undefined;
    if (this.#segments.every((segment) => segment.unsettled <= 0)) {
      const names = this.#segments.splice(0).map((segment) => segment.name);
      this.#totalBytes = 0;
      await Promise.all(names.map((name) => rm(path.join(this.#options.directory, name), { force: true })));
    }
  }

  async #flushLoop(): Promise<void> {
    // Let every append of this turn of the event loop join the group.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#pending.length > 0 && !this.#failed) {
        const group = this.#pending;
        this.#pending = [];
        await this.#commitGroup(group);
      }
    } finally {
      this.#flushing = undefined;
      if (this.#pending.length > 0 && !this.#failed) this.#flushing = this.#flushLoop();
    }
  }

  async #commitGroup(group: PendingRecord[]): Promise<void> {
    const groupBytes = group.reduce((sum, pending) => sum + pending.record.length, 0);
    let current = this.#segments.at(-1)!;
    if (current.bytes > 0 && current.bytes + groupBytes > this.#options.segmentMaxBytes) {
      await this.#startSegment(group[0]!.seq);
      current = this.#segments.at(-1)!;
    }
    const startedAtMs = this.#options.now();
    try {
      // A short write (the disk filled up part-way) reports no error: it must be caught here,
      // or the fsync below would "confirm" a torn record.
      const { bytesWritten } = await this.#handle!.writev(group.map((pending) => pending.record));
      if (bytesWritten !== groupBytes) {
        throw Object.assign(new Error(`short write: ${bytesWritten} of ${groupBytes} bytes`), { code: 'ENOSPC' });
      }
    } catch (error) {
      await this.#failWrite(group, groupBytes, current, error);
      return;
    }
    try {
      await this.#handle!.datasync();
    } catch (error) {
      // Never acknowledge after a failed fsync: what reached the disk is unknown.
      this.#fail(group, new WalFatalError(`fdatasync of ${current.name} failed: ${String(error)}`, { cause: error }));
      return;
    }
    this.#diskFullAtMs = undefined;
    current.bytes += groupBytes;
    current.lastSeq = group.at(-1)!.seq;
    current.unsettled += group.length;
    this.#options.onGroupCommit?.(this.#options.now() - startedAtMs, group.length);
    for (const pending of group) pending.resolve();
  }

  /** A failed write: a full disk is survivable (cut the partial write off, refuse until space returns). */
  async #failWrite(group: PendingRecord[], groupBytes: number, current: Segment, error: unknown): Promise<void> {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
      try {
        await this.#handle!.truncate(current.bytes);
        this.#diskFullAtMs = this.#options.now();
        this.#totalBytes -= groupBytes;
        for (const pending of group) this.#neverWritten.add(pending.seq);
        for (const pending of group) pending.reject(new WalFullError(`the disk is full (${code}); nothing was acknowledged`, { cause: error }));
        return;
      } catch (truncateError) {
        this.#fail(group, new WalFatalError(`write failed (${code}) and the partial write could not be cut off: ${String(truncateError)}`, { cause: error }));
        return;
      }
    }
    this.#fail(group, new WalFatalError(`write to ${current.name} failed: ${String(error)}`, { cause: error }));
  }

  #fail(group: PendingRecord[], error: WalFatalError): void {
    this.#failed = error;
    for (const pending of [...group, ...this.#pending]) pending.reject(error);
    this.#pending = [];
    this.#options.onFatal(error);
  }

  async #startSegment(firstSeq: number): Promise<void> {
    await this.#handle?.close();
    const name = segmentName(firstSeq);
    this.#handle = await open(path.join(this.#options.directory, name), 'a', 0o600);
    const { size } = await stat(path.join(this.#options.directory, name));
    await fsyncDirectory(this.#options.directory);
    this.#segments.push({ name, firstSeq, lastSeq: firstSeq - 1, unsettled: 0, bytes: size });
    this.#totalBytes += size;
    void this.#removeSettledSegments();
  }

  #segmentOf(seq: number): Segment | undefined {
    const segments = this.#segments;
    let low = 0;
    let high = segments.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const segment = segments[middle]!;
      if (seq < segment.firstSeq) high = middle - 1;
      else if (seq > segment.lastSeq) low = middle + 1;
      else return segment;
    }
    return undefined;
  }

  async #removeSettledSegments(): Promise<void> {
    const current = this.#segments.at(-1);
    const removable = this.#segments.filter((segment) => segment !== current && segment.unsettled <= 0);
    if (removable.length === 0) return;
    for (const segment of removable) {
      this.#segments.splice(this.#segments.indexOf(segment), 1);
      this.#totalBytes -= segment.bytes;
    }
    await Promise.all(removable.map((segment) => rm(path.join(this.#options.directory, segment.name), { force: true })));
  }
}
