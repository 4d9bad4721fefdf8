import { writevSync } from 'node:fs';
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WalFailedError, WalFullError } from './errors.ts';
import { encodeCancellation, encodeRecord } from './record-format.ts';
import { fsyncDirectory, segmentName } from './segment-files.ts';
import { SegmentPreallocator } from './segment-preallocator.ts';

export interface WalOptions {
  readonly directory: string;
  /** A new segment is started once the current one would pass this size. */
  readonly segmentMaxBytes: number;
  /** Appends are refused (WalFullError → 503) when they would take the unsettled segments past this. */
  readonly maxBytes: number;
  readonly now: () => number;
  /** Per fsync: how long it took and how many records it made durable. */
  readonly onGroupCommit?: (durationMs: number, records: number) => void;
  /** A write or fsync failed: the process must stop acknowledging and exit. */
  readonly onFatal: (error: WalFailedError) => void;
  /**
   * Deleting a settled segment (`remove`) or rolling a settled current one (`roll`) failed. Nothing
   * is lost: the segment stays (and counts toward maxBytes) and it is tried again at the next settle.
   */
  readonly onHousekeepingFailed?: (error: unknown, file: string, action: 'remove' | 'roll') => void;
  /** After a full disk, appends are refused for this long, then one is tried again. Default 1000. */
  readonly diskFullRetryMs?: number;
}

/** A segment left by an earlier run, with the records recovery replays from it. */
export interface ExistingSegment {
  readonly name: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** Event records in it to replay (not cancelled): unsettled until they settle again. */
  readonly records: number;
  readonly bytes: number;
  /** Older segments holding records that this one's cancellation records cancel: it is kept while they are. */
  readonly dependsOn?: readonly string[];
}

interface Segment {
  readonly name: string;
  readonly firstSeq: number;
  lastSeq: number;
  /** Event records durable in this segment and not yet settled (or cancelled). */
  unsettled: number;
  bytes: number;
  /** Older segments whose cancelled records this one's cancellation records cover: deleting this one first would let them be replayed. */
  readonly dependsOn: Set<string>;
}

interface PendingRecord {
  readonly seq: number;
  readonly record: Buffer;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  /** A cancellation record: the event records it cancels, settled once it is durable. */
  readonly cancels?: readonly number[];
}

/** The records of one write, waiting for an fsync that started after it to return. */
interface WrittenGroup {
  readonly records: readonly PendingRecord[];
  readonly bytes: number;
  /** Its own fdatasync returned without error. */
  synced: boolean;
}

/**
 * fdatasync calls in flight at once. Two: the records that arrive while one fsync runs get their
 * own at once instead of waiting for it to return first (on the bench's disk, two concurrent
 * fdatasyncs on one file complete several times as often as one after the other).
 */
const MAX_SYNCS_IN_FLIGHT = 2;

export interface Appended {
  readonly seq: number;
  /** Resolves once the fsync covering this record has returned; never before. */
  readonly durable: Promise<void>;
}

/**
 * The write-ahead log: an event is appended before it is acknowledged, and its segment is removed
 * once every record in it is settled (stored, duplicate, dead-lettered, or cancelled).
 *
 * Group commit: appends made while an fsync is running wait for the next one, and every record
 * written since the previous fsync is covered by one fdatasync, so the fsync cost is paid per
 * group, not per request (PostgreSQL's commit_delay, without the delay).
 *
 * Crash ordering: a segment is deleted only after all its records settled in PostgreSQL (or the
 * fsynced dead-letter queue), or were cancelled by a durable cancellation record (written when an
 * event reached the log but its request was refused after all). A crash before the deletion
 * replays the segment; replayed events are duplicates the sink skips, they settle again, and the
 * segment goes. Nothing needs a separate checkpoint file, so there is nothing to get out of step.
 */
export class WriteAheadLog {
  readonly #options: WalOptions;
  /** Oldest first; the last one is being appended to. */
  readonly #segments: Segment[] = [];
  #handle: FileHandle | undefined;
  #nextSeq: number;
  #pending: PendingRecord[] = [];
  #flushing: Promise<void> | undefined;
  /** Groups written to the current segment whose fsync has not returned yet, in write order. */
  #unsynced: WrittenGroup[] = [];
  /** fdatasync calls running now (at most MAX_SYNCS_IN_FLIGHT). */
  #syncsInFlight = 0;
  /** Bytes written to the current segment, durable or not (its `bytes` counts the durable ones). */
  #writtenBytes = 0;
  /** Woken when an fsync returns (the flush loop waits here for a free slot, a roll for none running). */
  #syncReturned: (() => void)[] = [];
  /** Bytes of every segment not yet deleted, and of records waiting to be written. */
  #totalBytes = 0;
  /** When a write last failed for want of space (options.now() time), or undefined. */
  #diskFullAtMs: number | undefined;
  #failed: WalFailedError | undefined;
  #closed = false;
  /** Sequence numbers taken by appends whose write failed (disk full): never in a segment. */
  readonly #neverWritten = new Set<number>();
  /** Removing settled segments and rolling a settled current one: one run at a time. */
  #housekeeping: Promise<void> | undefined;
  #housekeepingAgain = false;
  /** A removal failed: retried at the next settle. */
  #removalFailed = false;
  /** An append was refused for want of room since the last roll. */
  #blocked = false;
  /** A roll of the current segment is under way: the flush loop waits for it. */
  #rolling: Promise<void> | undefined;
  /** Keeps the next segment's zero-filled file ready (appends then overwrite allocated blocks). */
  readonly #preallocator: SegmentPreallocator;

  private constructor(options: WalOptions, existing: readonly ExistingSegment[], nextSeq: number) {
    this.#options = options;
    this.#preallocator = new SegmentPreallocator(options.directory, options.segmentMaxBytes);
    this.#nextSeq = nextSeq;
    for (const segment of existing) {
      this.#segments.push({
        name: segment.name,
        firstSeq: segment.firstSeq,
        lastSeq: segment.lastSeq,
        unsettled: segment.records,
        bytes: segment.bytes,
        dependsOn: new Set(segment.dependsOn ?? []),
      });
      this.#totalBytes += segment.bytes;
    }
  }

  /** Open for appending after recovery: `existing` are the recovered segments, kept until settled. */
  static async open(options: WalOptions, existing: readonly ExistingSegment[], nextSeq: number): Promise<WriteAheadLog> {
    const wal = new WriteAheadLog(options, existing, nextSeq);
    await wal.#startSegment(nextSeq);
    // Recovered segments with nothing to replay can go at once.
    await wal.idle();
    return wal;
  }

  get bytes(): number {
    return this.#totalBytes;
  }

  get segments(): number {
    return this.#segments.length;
  }

  /** The log failed for good (a write or fsync error): nothing more is acknowledged. */
  get failed(): boolean {
    return this.#failed !== undefined;
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
    return this.appendAll([payload])[0]!;
  }

  /**
   * Append the payloads of one request, all or none: when the log has no room for all of them
   * (WAL_MAX_BYTES, a full disk), WalFullError is thrown and none is written. They are written in
   * one group, so they become durable together (or fail together).
   */
  appendAll(payloads: readonly (Buffer | string)[]): Appended[] {
    if (this.#failed) throw this.#failed;
    if (this.#closed) throw new WalFullError('the write-ahead log is closed');
    const refusing = this.refusing;
    if (refusing) {
      this.#refusedForRoom();
      throw new WalFullError(`the write-ahead log refuses new events: ${refusing}`);
    }
    const firstSeq = this.#nextSeq;
    const records = payloads.map((payload, index) => encodeRecord(firstSeq + index, payload));
    const bytes = records.reduce((sum, record) => sum + record.length, 0);
    // A request larger than the whole log is still taken by an empty log, so it is not refused forever.
    if (this.#totalBytes > 0 && this.#totalBytes + bytes > this.#options.maxBytes) {
      this.#refusedForRoom();
      throw new WalFullError(`the write-ahead log has no room for this request (${bytes} bytes; WAL_MAX_BYTES reached)`);
    }
    this.#nextSeq += records.length;
    this.#totalBytes += bytes;
    // One promise for the request: its records are in one group, durable (or failed) together.
    const { promise: durable, resolve, reject } = deferred();
    const appended: Appended[] = [];
    for (let index = 0; index < records.length; index += 1) {
      const seq = firstSeq + index;
      this.#pending.push({ seq, record: records[index]!, resolve, reject });
      appended.push({ seq, durable });
    }
    this.#flushing ??= this.#flushLoop();
    return appended;
  }

  /**
   * Withdraw durable records whose events were refused after all: a cancellation record is
   * appended (even when the log is full, or closed), and they count as settled once it is durable,
   * so no later start replays them. Resolves once the cancellation is durable.
   */
  cancel(seqs: Iterable<number>): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    const live: number[] = [];
    for (const seq of seqs) {
      if (this.#neverWritten.delete(seq)) continue;
      if (this.#segmentOf(seq)) live.push(seq);
    }
    if (live.length === 0) return Promise.resolve();
    const seq = this.#nextSeq++;
    const record = encodeCancellation(seq, live);
    this.#totalBytes += record.length;
    const durable = new Promise<void>((resolve, reject) => this.#pending.push({ seq, record, resolve, reject, cancels: live }));
    this.#flushing ??= this.#flushLoop();
    return durable;
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
    if (emptied || this.#removalFailed) this.#houseKeep();
  }

  /** Resolves once the segment removals and rolls under way are done (they run in the background). */
  async idle(): Promise<void> {
    while (this.#housekeeping) await this.#housekeeping;
  }

  /**
   * Wait for pending appends, then close the current segment. When every record is settled (a
   * clean drain), every segment goes, so the next start has nothing to replay.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
    await this.#syncsReturned(0);
    await this.idle();
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
    await this.#preallocator.close();
    if (this.#segments.every((segment) => segment.unsettled <= 0)) {
      await Promise.all([...this.#segments].map((segment) => this.#removeSegment(segment)));
    }
  }

  /**
   * Group commit with the fsyncs overlapped: the records appended in one turn of the event loop are
   * written as one group and an fdatasync for them starts at once, even while the previous
   * group's fsync is still running (up to MAX_SYNCS_IN_FLIGHT), so a request never waits for
   * an fsync that started before its records were written to finish first. Writes stay in order
   * (one writev at a time); a group is acknowledged once an fsync that started after its write
   * returned has returned (POSIX: fdatasync covers every write completed before the call), and
   * groups are completed in write order.
   */
  async #flushLoop(): Promise<void> {
    // Let every append of this turn of the event loop join the group.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#pending.length > 0 && !this.#failed) {
        // Both slots busy: the records wait (and gather) for the next fsync to return.
        if (this.#syncsInFlight >= MAX_SYNCS_IN_FLIGHT) {
          await this.#syncsReturned(MAX_SYNCS_IN_FLIGHT - 1);
          continue;
        }
        const group = this.#pending;
        this.#pending = [];
        await this.#writeGroup(group);
      }
      if (this.#closed && this.#pending.length === 0 && this.#handle) {
        // A cancellation written after close reopened the segment: close it again.
        await this.#syncsReturned(0);
        const handle = this.#handle;
        this.#handle = undefined;
        await handle?.close().catch(() => {});
      }
    } finally {
      this.#flushing = undefined;
      if (this.#pending.length > 0 && !this.#failed) this.#flushing = this.#flushLoop();
      else if (this.#blocked || this.#totalBytes >= this.#options.maxBytes) this.#houseKeep();
    }
  }

  /** Resolves once no more than `running` fsyncs are in flight. */
  async #syncsReturned(running: number): Promise<void> {
    while (this.#syncsInFlight > running) await new Promise<void>((resolve) => this.#syncReturned.push(resolve));
  }

  /** Write one group (opening or rolling the segment first), then start its fsync. */
  async #writeGroup(group: PendingRecord[]): Promise<void> {
    const groupBytes = group.reduce((sum, pending) => sum + pending.record.length, 0);
    if (this.#rolling) await this.#rolling;
    try {
      if (this.#writtenBytes > 0 && this.#writtenBytes + groupBytes > this.#options.segmentMaxBytes) {
        // Every write to the old segment must be durable before its handle is closed.
        await this.#syncsReturned(0);
        if (this.#failed) {
          for (const pending of group) pending.reject(this.#failed);
          return;
        }
        await this.#startSegment(group[0]!.seq);
      } else if (!this.#handle) {
        // Not 'a': positional writes (below) are ignored in append mode on Linux.
        this.#handle = await open(path.join(this.#options.directory, this.#segments.at(-1)!.name), 'r+', 0o600);
      }
    } catch (error) {
      this.#fail(group, new WalFailedError(`cannot open a write-ahead-log segment: ${String(error)}`, { cause: error }));
      return;
    }
    const current = this.#segments.at(-1)!;
    try {
      // A short write (the disk filled up part-way) reports no error: it must be caught here,
      // or the fsync below would "confirm" a torn record.
      // Written synchronously: a group is a few KiB into the page cache (tens of µs), and an async
      // writev cost a thread-pool round trip per group, whose wake-ups on 2 cores preempted the
      // main thread (8 % of its samples sat in the writev and fdatasync dispatch). The fdatasync
      // stays asynchronous: it waits for the disk.
      // At the segment's written length, over its zero-filled blocks (segment-preallocator.ts).
      const bytesWritten = writevSync(this.#handle!.fd, group.map((pending) => pending.record), this.#writtenBytes);
      if (bytesWritten !== groupBytes) {
        throw Object.assign(new Error(`short write: ${bytesWritten} of ${groupBytes} bytes`), { code: 'ENOSPC' });
      }
    } catch (error) {
      await this.#failWrite(group, groupBytes, error);
      return;
    }
    if (this.#failed) {
      // An fsync failed while this group was being written: nothing more is acknowledged.
      for (const pending of group) pending.reject(this.#failed);
      return;
    }
    this.#writtenBytes += groupBytes;
    const written: WrittenGroup = { records: group, bytes: groupBytes, synced: false };
    this.#unsynced.push(written);
    this.#startSync(current, written);
  }

  /** The fdatasync of `last` (it covers every group written so far); not awaited by the writer. */
  #startSync(current: Segment, last: WrittenGroup): void {
    const handle = this.#handle!;
    const startedAtMs = this.#options.now();
    this.#syncsInFlight += 1;
    handle.datasync().then(
      () => {
        this.#syncsInFlight -= 1;
        last.synced = true;
        if (!this.#failed) this.#completeSynced(current, this.#options.now() - startedAtMs);
        this.#wakeSyncWaiters();
      },
      (error: unknown) => {
        this.#syncsInFlight -= 1;
        // Never acknowledge after a failed fsync: what reached the disk is unknown.
        if (!this.#failed) this.#fail([], new WalFailedError(`fdatasync of ${current.name} failed: ${String(error)}`, { cause: error }));
        this.#wakeSyncWaiters();
      },
    );
  }

  #wakeSyncWaiters(): void {
    const waiters = this.#syncReturned;
    this.#syncReturned = [];
    for (const wake of waiters) wake();
  }

  /**
   * An fsync returned: complete, in write order, every group whose own fsync has returned and
   * all of whose predecessors' did. A later fsync returning first does not complete an earlier
   * group: after a write-back error Linux may report it to one fsync call only, so an earlier
   * group is durable only once its own fsync says so (a failed one fails the log, and every
   * group still waiting is refused).
   */
  #completeSynced(current: Segment, durationMs: number): void {
    if (!this.#unsynced[0]?.synced) return;
    this.#diskFullAtMs = undefined;
    let records = 0;
    let emptied = false;
    while (this.#unsynced[0]?.synced) {
      const written = this.#unsynced.shift()!;
      current.bytes += written.bytes;
      current.lastSeq = written.records.at(-1)!.seq;
      for (const pending of written.records) {
        if (!pending.cancels) current.unsettled += 1;
        for (const cancelled of pending.cancels ?? []) {
          const target = this.#segmentOf(cancelled);
          if (!target) continue;
          if (target !== current) current.dependsOn.add(target.name);
          target.unsettled -= 1;
          if (target.unsettled === 0) emptied = true;
        }
      }
      records += written.records.length;
      for (const pending of written.records) pending.resolve();
    }
    this.#options.onGroupCommit?.(durationMs, records);
    if (emptied) this.#houseKeep();
  }

  /** A failed write: a full disk is survivable (cut the partial write off, refuse until space returns). */
  async #failWrite(group: PendingRecord[], groupBytes: number, error: unknown): Promise<void> {
    const current = this.#segments.at(-1)!;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
      try {
        // Cut off this group's partial write only: the groups written before it await their fsync.
        await this.#handle!.truncate(this.#writtenBytes);
        this.#diskFullAtMs = this.#options.now();
        this.#totalBytes -= groupBytes;
        for (const pending of group) if (!pending.cancels) this.#neverWritten.add(pending.seq);
        for (const pending of group) pending.reject(new WalFullError(`the disk is full (${code}); nothing was acknowledged`, { cause: error }));
        return;
      } catch (truncateError) {
        this.#fail(group, new WalFailedError(`write failed (${code}) and the partial write could not be cut off: ${String(truncateError)}`, { cause: error }));
        return;
      }
    }
    this.#fail(group, new WalFailedError(`write to ${current.name} failed: ${String(error)}`, { cause: error }));
  }

  #fail(group: PendingRecord[], error: WalFailedError): void {
    if (this.#failed) {
      // Already failed (an fsync and a write can both fail): one fatal report.
      for (const pending of group) pending.reject(this.#failed);
      return;
    }
    this.#failed = error;
    for (const pending of [...group, ...this.#unsynced.flatMap((written) => written.records), ...this.#pending]) pending.reject(error);
    this.#pending = [];
    this.#unsynced = [];
    this.#options.onFatal(error);
  }

  async #startSegment(firstSeq: number): Promise<void> {
    const previous = this.#handle;
    this.#handle = undefined;
    await previous?.close();
    const name = segmentName(firstSeq);
    const file = path.join(this.#options.directory, name);
    // A segment's name is new (recovery's next sequence number is past every record), but a file
    // already there is appended to, never replaced. Otherwise the spare becomes the segment; with
    // no spare (no room for a whole segment) the segment is a file that grows with each append.
    const existing = await open(file, 'r+').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    const size = existing ? (await existing.stat()).size : 0;
    this.#handle = existing ?? (await this.#preallocator.take(name)) ?? (await open(file, 'wx', 0o600));
    await fsyncDirectory(this.#options.directory);
    this.#segments.push({ name, firstSeq, lastSeq: firstSeq - 1, unsettled: 0, bytes: size, dependsOn: new Set() });
    this.#writtenBytes = size;
    this.#totalBytes += size;
    // The next segment's file is zero-filled while this one fills.
    this.#preallocator.prepare();
    this.#houseKeep();
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

  #refusedForRoom(): void {
    this.#blocked = true;
    this.#houseKeep();
  }

  /** Start (or re-run) the background housekeeping; it never rejects. */
  #houseKeep(): void {
    if (this.#housekeeping) {
      this.#housekeepingAgain = true;
      return;
    }
    this.#housekeeping = (async () => {
      try {
        do {
          this.#housekeepingAgain = false;
          await this.#rollSettledCurrent();
          await this.#removeSettledSegments();
        } while (this.#housekeepingAgain);
      } finally {
        this.#housekeeping = undefined;
      }
    })();
  }

  /**
   * The current segment is never deleted, so a log whose bytes are all in a settled current
   * segment would refuse appends forever (WAL_MAX_BYTES near WAL_SEGMENT_BYTES, or one large
   * request): when appends are blocked and it is settled, start a new one so it can go.
   */
  async #rollSettledCurrent(): Promise<void> {
    const current = this.#segments.at(-1);
    if (!current || this.#closed || this.#failed || this.#flushing || this.#pending.length > 0 || this.#syncsInFlight > 0) return;
    if (!this.#blocked && this.#totalBytes < this.#options.maxBytes) return;
    if (current.unsettled > 0 || current.bytes === 0 || segmentName(this.#nextSeq) === current.name) return;
    this.#blocked = false;
    let rolled: () => void = () => {};
    this.#rolling = new Promise<void>((resolve) => (rolled = resolve));
    try {
      await this.#startSegment(this.#nextSeq);
    } catch (error) {
      // The flush loop reopens the current segment if the new one could not be made.
      this.#options.onHousekeepingFailed?.(error, path.join(this.#options.directory, segmentName(this.#nextSeq)), 'roll');
    } finally {
      this.#rolling = undefined;
      rolled();
    }
  }

  /** Delete every settled segment but the current one; a failed deletion keeps it (and its bytes) for the next try. */
  async #removeSettledSegments(): Promise<void> {
    this.#removalFailed = false;
    const failed = new Set<Segment>();
    for (;;) {
      const current = this.#segments.at(-1);
      const present = new Set(this.#segments.map((segment) => segment.name));
      const removable = this.#segments.filter(
        (segment) => segment !== current && segment.unsettled <= 0 && !failed.has(segment) && ![...segment.dependsOn].some((name) => present.has(name)),
      );
      if (removable.length === 0) return;
      const removed = await Promise.all(removable.map((segment) => this.#removeSegment(segment)));
      removable.forEach((segment, index) => {
        if (!removed[index]) failed.add(segment);
      });
    }
  }

  /** Delete one segment's file, then forget it; false (reported, kept) when the deletion failed. */
  async #removeSegment(segment: Segment): Promise<boolean> {
    const file = path.join(this.#options.directory, segment.name);
    try {
      await rm(file, { force: true });
    } catch (error) {
      this.#removalFailed = true;
      this.#options.onHousekeepingFailed?.(error, file, 'remove');
      return false;
    }
    const index = this.#segments.indexOf(segment);
    if (index >= 0) {
      this.#segments.splice(index, 1);
      this.#totalBytes -= segment.bytes;
    }
    return true;
  }
}

/** A promise and its settle functions (Promise.withResolvers, which Node 20 lacks). */
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((onResolve, onReject) => {
    resolve = onResolve;
    reject = onReject;
  });
  return { promise, resolve, reject };
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: Error) => void;
}
