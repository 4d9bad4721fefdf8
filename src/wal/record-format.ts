import CRC32C from 'crc-32/crc32c';

/**
 * One WAL record: a 16-byte header then the payload. Little-endian.
 *   u32 type<<24 | payload length | u32 CRC32C | u64 sequence number | payload
 *
 * Type 0 (format 1, every record before cancellations existed): an event, its payload the
 * event's COPY row (UTF-8); the CRC covers (seq, payload), so a record moved or spliced is
 * detected. Type 1 (format 2): a cancellation, its payload (u64 first seq, u32 count) ranges of
 * event records that were refused after they were written and must never be replayed; the CRC
 * covers the type/length word as well, so a flipped type bit cannot turn one kind into the other.
 * A segment written before format 2 holds only type-0 records and reads as before.
 */
export const HEADER_BYTES = 16;
/** No payload is larger than this (events are ≤ 64 KiB of JSON; rows are smaller): a sanity bound for parsing. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

const LENGTH_MASK = 0x00ff_ffff;
const TYPE_SHIFT = 24;
const TYPE_EVENT = 0;
const TYPE_CANCEL = 1;
/** A cancellation payload: ranges of (u64 first seq, u32 count). */
const RANGE_BYTES = 12;

/** Encode one event record. A string payload (an event's row) is written as UTF-8 straight into the record. */
export function encodeRecord(seq: number, payload: Buffer | string): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const record = Buffer.allocUnsafe(HEADER_BYTES + length);
  record.writeUInt32LE(length, 0);
  writeSeq(record, seq, 8);
  if (typeof payload === 'string') record.write(payload, HEADER_BYTES, 'utf8');
  else payload.copy(record, HEADER_BYTES);
  record.writeUInt32LE(checksum(record, TYPE_EVENT, length), 4);
  return record;
}

/**
 * A sequence number as u64 little-endian, written as two u32 (no BigInt per record: this runs for
 * every event). Sequence numbers are safe integers (< 2^53), so the high word fits in 21 bits.
 */
function writeSeq(record: Buffer, seq: number, offset: number): void {
  record.writeUInt32LE(seq >>> 0, offset);
  record.writeUInt32LE(Math.floor(seq / 0x1_0000_0000), offset + 4);
}

/** Encode a cancellation record (its own sequence number `seq`) for the event records `cancelled`. */
export function encodeCancellation(seq: number, cancelled: Iterable<number>): Buffer {
  const ranges = toRanges(cancelled);
  const length = ranges.length * RANGE_BYTES;
  const record = Buffer.allocUnsafe(HEADER_BYTES + length);
  record.writeUInt32LE(((TYPE_CANCEL << TYPE_SHIFT) | length) >>> 0, 0);
  record.writeBigUInt64LE(BigInt(seq), 8);
  for (const [index, [first, count]] of ranges.entries()) {
    record.writeBigUInt64LE(BigInt(first), HEADER_BYTES + index * RANGE_BYTES);
    record.writeUInt32LE(count, HEADER_BYTES + index * RANGE_BYTES + 8);
  }
  record.writeUInt32LE(checksum(record, TYPE_CANCEL, length), 4);
  return record;
}

function toRanges(seqs: Iterable<number>): [number, number][] {
  const sorted = [...new Set(seqs)].sort((a, b) => a - b);
  const ranges: [number, number][] = [];
  for (const seq of sorted) {
    const last = ranges.at(-1);
    if (last && last[0] + last[1] === seq && last[1] < 0xffff_ffff) last[1] += 1;
    else ranges.push([seq, 1]);
  }
  return ranges;
}

function checksum(record: Buffer, type: number, payloadLength: number): number {
  const body = record.subarray(8, HEADER_BYTES + payloadLength);
  if (type === TYPE_EVENT) return CRC32C.buf(body) >>> 0;
  return CRC32C.buf(body, CRC32C.buf(record.subarray(0, 4))) >>> 0;
}

export type ParsedRecord = {
  readonly seq: number;
  /** An event's row, or (for a cancellation) the encoded ranges. */
  readonly payload: Buffer;
  readonly offset: number;
  readonly bytes: number;
  /** For a cancellation record: the sequence numbers of the event records it cancels. */
  readonly cancels?: readonly number[];
};

export type ParseStep =
  | { readonly kind: 'record'; readonly record: ParsedRecord }
  /** Fewer bytes left than the header or the payload claims: a write cut short (at the tail). */
  | { readonly kind: 'truncated' }
  /** The bytes at `offset` are not a valid record. */
  | { readonly kind: 'corrupt' };

/** Parse the record at `offset` of `buffer`. */
export function parseRecordAt(buffer: Buffer, offset: number): ParseStep {
  if (buffer.length - offset < HEADER_BYTES) return { kind: 'truncated' };
  const word = buffer.readUInt32LE(offset);
  const type = word >>> TYPE_SHIFT;
  const length = word & LENGTH_MASK;
  if ((type !== TYPE_EVENT && type !== TYPE_CANCEL) || length > MAX_PAYLOAD_BYTES) return { kind: 'corrupt' };
  if (buffer.length - offset < HEADER_BYTES + length) return { kind: 'truncated' };
  const record = buffer.subarray(offset, offset + HEADER_BYTES + length);
  if (record.readUInt32LE(4) !== checksum(record, type, length)) return { kind: 'corrupt' };
  const seq = Number(record.readBigUInt64LE(8));
  const payload = record.subarray(HEADER_BYTES);
  if (type === TYPE_EVENT) return { kind: 'record', record: { seq, payload, offset, bytes: HEADER_BYTES + length } };
  if (length === 0 || length % RANGE_BYTES !== 0) return { kind: 'corrupt' };
  const cancels: number[] = [];
  for (let at = 0; at < length; at += RANGE_BYTES) {
    const first = Number(payload.readBigUInt64LE(at));
    const count = payload.readUInt32LE(at + 8);
    for (let index = 0; index < count; index += 1) cancels.push(first + index);
  }
  return { kind: 'record', record: { seq, payload, offset, bytes: HEADER_BYTES + length, cancels } };
}

export interface SegmentScan {
  /** Every valid record, events and cancellations, in file order. */
  readonly records: ParsedRecord[];
  /** Where the valid data ends: a torn tail after it is truncated away. */
  readonly validBytes: number;
  /** Byte ranges that are not records (damaged ones, including a damaged final record): quarantined, skipped. */
  readonly corruptRanges: { readonly offset: number; readonly bytes: number }[];
  /** A torn final record (a crash mid-append) was found after validBytes. */
  readonly tornTail: boolean;
}

/**
 * Read every record of a segment. Its records end where the rest of the file is zeros: the unused
 * part of a preallocated segment (segment-preallocator.ts; an acknowledged record is never all
 * zeros, its sequence number is at least 1), or space a file system allocated for an append that
 * never reached the disk. A bad spot before that is resynchronised by looking for the next offset
 * where a record with a valid CRC starts: if one exists the bad bytes are a corrupt range
 * (skipped and reported). If none does, the bad bytes are the torn tail of an interrupted append
 * only when they are cut short by the end of the file (a header or payload shorter than its
 * length says), or, in a preallocated segment, when an event record's declared length runs into
 * the trailing zeros (the part of the append that never reached the disk). A complete final
 * record that fails its checksum was written whole and damaged later: it is corruption, kept and
 * reported, never silently dropped.
 */
export function scanSegment(buffer: Buffer): SegmentScan {
  const records: ParsedRecord[] = [];
  const corruptRanges: { offset: number; bytes: number }[] = [];
  let offset = 0;
  while (offset < buffer.length) {
    const step = parseRecordAt(buffer, offset);
    if (step.kind === 'record') {
      records.push(step.record);
      offset += step.record.bytes;
      continue;
    }
    const dataEnd = endOfData(buffer, offset);
    if (dataEnd === offset) return { records, validBytes: offset, corruptRanges, tornTail: false };
    const next = findNextRecord(buffer, offset + 1, dataEnd);
    if (next === undefined) {
      if (step.kind === 'truncated' || isTornIntoZeros(buffer, offset, dataEnd)) return { records, validBytes: offset, corruptRanges, tornTail: true };
      corruptRanges.push({ offset, bytes: dataEnd - offset });
      return { records, validBytes: buffer.length, corruptRanges, tornTail: false };
    }
    corruptRanges.push({ offset, bytes: next - offset });
    offset = next;
  }
  return { records, validBytes: offset, corruptRanges, tornTail: false };
}

/**
 * An event record whose declared length runs past the last non-zero byte: in a preallocated
 * segment, an append cut short by a crash (the rest of its bytes are the zeros never overwritten).
 * An event record always ends in its row's newline, so one written whole and damaged later ends
 * at or before the zeros. Cancellation records may end in zero bytes, so they never count as torn.
 */
function isTornIntoZeros(buffer: Buffer, offset: number, dataEnd: number): boolean {
  if (buffer.length - offset < HEADER_BYTES) return false;
  const word = buffer.readUInt32LE(offset);
  return word >>> TYPE_SHIFT === TYPE_EVENT && offset + HEADER_BYTES + (word & LENGTH_MASK) > dataEnd;
}

const ZERO_CHUNK = Buffer.alloc(64 * 1024);

/** Where the bytes from `from` on stop being anything but a run of zeros to the end of the file (`from` when they are all zeros). */
function endOfData(buffer: Buffer, from: number): number {
  let end = buffer.length;
  // Whole chunks of zeros from the end first (memcmp), then byte by byte.
  while (end - from >= ZERO_CHUNK.length && buffer.subarray(end - ZERO_CHUNK.length, end).equals(ZERO_CHUNK)) end -= ZERO_CHUNK.length;
  while (end > from && buffer[end - 1] === 0) end -= 1;
  return end;
}

/** The next offset before `end` (where only zeros follow) at which a valid record starts. */
function findNextRecord(buffer: Buffer, from: number, end: number): number | undefined {
  for (let offset = from; offset < end && offset + HEADER_BYTES <= buffer.length; offset += 1) {
    if (parseRecordAt(buffer, offset).kind === 'record') return offset;
  }
  return undefined;
}
