import CRC32C from 'crc-32/crc32c';

/**
 * One WAL record: a 16-byte header then the payload (an event's COPY row, UTF-8).
 *   u32 payload length | u32 CRC32C over (seq, payload) | u64 sequence number | payload
 * Little-endian. The CRC covers the sequence number so a record moved or spliced is detected.
 */
export const HEADER_BYTES = 16;
/** No payload is larger than this (events are ≤ 64 KiB of JSON; rows are smaller): a sanity bound for parsing. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

/** Encode one record. A string payload (an event's row) is written as UTF-8 straight into the record. */
export function encodeRecord(seq: number, payload: Buffer | string): Buffer {
  const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const record = Buffer.allocUnsafe(HEADER_BYTES + length);
  record.writeUInt32LE(length, 0);
  record.writeBigUInt64LE(BigInt(seq), 8);
  if (typeof payload === 'string') record.write(payload, HEADER_BYTES, 'utf8');
  else payload.copy(record, HEADER_BYTES);
  record.writeUInt32LE(checksum(record, length), 4);
  return record;
}

function checksum(record: Buffer, payloadLength: number): number {
  return CRC32C.buf(record.subarray(8, HEADER_BYTES + payloadLength)) >>> 0;
}

export type ParsedRecord = { readonly seq: number; readonly payload: Buffer; readonly offset: number; readonly bytes: number };

export type ParseStep =
  | { readonly kind: 'record'; readonly record: ParsedRecord }
  /** Fewer bytes left than the header or the payload claims: a write cut short (at the tail). */
  | { readonly kind: 'truncated' }
  /** The bytes at `offset` are not a valid record. */
  | { readonly kind: 'corrupt' };

/** Parse the record at `offset` of `buffer`. */
export function parseRecordAt(buffer: Buffer, offset: number): ParseStep {
  if (buffer.length - offset < HEADER_BYTES) return { kind: 'truncated' };
  const length = buffer.readUInt32LE(offset);
  if (length > MAX_PAYLOAD_BYTES) return { kind: 'corrupt' };
  if (buffer.length - offset < HEADER_BYTES + length) return { kind: 'truncated' };
  const record = buffer.subarray(offset, offset + HEADER_BYTES + length);
  if (record.readUInt32LE(4) !== checksum(record, length)) return { kind: 'corrupt' };
  const seq = Number(record.readBigUInt64LE(8));
  return { kind: 'record', record: { seq, payload: record.subarray(HEADER_BYTES), offset, bytes: HEADER_BYTES + length } };
}

export interface SegmentScan {
  readonly records: ParsedRecord[];
  /** Where the valid data ends: a torn tail after it is truncated away. */
  readonly validBytes: number;
  /** Byte ranges that are not records but are followed by valid ones: quarantined, skipped. */
  readonly corruptRanges: { readonly offset: number; readonly bytes: number }[];
  /** A torn final record (a crash mid-append) was found after validBytes. */
  readonly tornTail: boolean;
}

/**
 * Read every record of a segment. A bad spot is resynchronised by looking for the next offset
 * where a record with a valid CRC starts: if one exists the bad bytes are a corrupt range (skipped
 * and reported); if none does, they are the torn tail of an interrupted append.
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
    const next = findNextRecord(buffer, offset + 1);
    if (next === undefined) return { records, validBytes: offset, corruptRanges, tornTail: true };
    corruptRanges.push({ offset, bytes: next - offset });
    offset = next;
  }
  return { records, validBytes: offset, corruptRanges, tornTail: false };
}

function findNextRecord(buffer: Buffer, from: number): number | undefined {
  for (let offset = from; offset + HEADER_BYTES <= buffer.length; offset += 1) {
    if (parseRecordAt(buffer, offset).kind === 'record') return offset;
  }
  return undefined;
}
