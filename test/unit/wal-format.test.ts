import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { encodeCancellation, encodeRecord, HEADER_BYTES, parseRecordAt, scanSegment } from '../../src/wal/record-format.ts';
import { quarantineDirectory, recoverWal } from '../../src/wal/recover.ts';
import { segmentName } from '../../src/wal/segment-files.ts';
import { WriteAheadLog } from '../../src/wal/write-ahead-log.ts';

const rows = (from: number, count: number) => Array.from({ length: count }, (_, i) => Buffer.from(`row ${from + i}\twith\\ttabs\n`));
const segment = (firstSeq: number, payloads: Buffer[]) => Buffer.concat(payloads.map((payload, i) => encodeRecord(firstSeq + i, payload)));

describe('WAL record format', () => {
  it('round-trips a record: length, CRC32C, sequence number, payload', () => {
    const record = encodeRecord(42, Buffer.from('hello'));
    assert.equal(record.length, HEADER_BYTES + 5);
    const step = parseRecordAt(record, 0);
    assert.equal(step.kind, 'record');
    assert.equal(step.kind === 'record' && step.record.seq, 42);
    assert.equal(step.kind === 'record' && step.record.payload.toString(), 'hello');
  });

  it('round-trips sequence numbers past 32 bits, up to the largest safe integer, as the u64 the format defines', () => {
    for (const seq of [2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 40 + 12_345, Number.MAX_SAFE_INTEGER]) {
      const record = encodeRecord(seq, 'row\n');
      assert.equal(record.readBigUInt64LE(8), BigInt(seq));
      const step = parseRecordAt(record, 0);
      assert.equal(step.kind === 'record' && step.record.seq, seq);
    }
  });

  it('encodes a string payload as UTF-8 straight into the record, the same bytes as from a Buffer', () => {
    const row = 'id\tZoë 👩‍💻 \\t\n';
    const fromString = encodeRecord(9, row);
    assert.deepEqual(fromString, encodeRecord(9, Buffer.from(row)));
    const step = parseRecordAt(fromString, 0);
    assert.equal(step.kind === 'record' && step.record.payload.toString('utf8'), row);
  });

  it('detects a flipped bit anywhere in the record', () => {
    const record = encodeRecord(7, Buffer.from('payload'));
    for (let byte = 4; byte < record.length; byte += 1) {
      const damaged = Buffer.from(record);
      damaged[byte]! ^= 0x10;
      assert.notEqual(parseRecordAt(damaged, 0).kind, 'record', `flip at byte ${byte}`);
    }
  });

  it('reports a torn final record and keeps everything before it', () => {
    const whole = segment(1, rows(1, 5));
    const torn = whole.subarray(0, whole.length - 3);
    const scan = scanSegment(torn);
    assert.equal(scan.records.length, 4);
    assert.equal(scan.tornTail, true);
    assert.equal(scan.validBytes, whole.length - encodeRecord(5, rows(5, 1)[0]!).length);
  });

  it('a complete final record that fails its checksum is corruption, not a torn write', () => {
    const payloads = rows(1, 3);
    const whole = Buffer.from(segment(1, payloads));
    const lastOffset = whole.length - encodeRecord(3, payloads[2]!).length;
    whole[whole.length - 2]! ^= 0xff; // the whole record is there; its payload is damaged
    const scan = scanSegment(whole);
    assert.deepEqual(scan.records.map((r) => r.seq), [1, 2]);
    assert.equal(scan.tornTail, false, 'a full-length record was written whole: a bad checksum is damage, not an interrupted append');
    assert.deepEqual(scan.corruptRanges, [{ offset: lastOffset, bytes: whole.length - lastOffset }]);
    assert.equal(scan.validBytes, whole.length, 'nothing is cut off: the damaged bytes stay for inspection');
  });

  it('a final record whose header claims more bytes than the file holds is torn', () => {
    const whole = segment(1, rows(1, 2));
    const scan = scanSegment(Buffer.concat([whole, encodeRecord(3, Buffer.from('cut')).subarray(0, HEADER_BYTES + 1)]));
    assert.equal(scan.tornTail, true);
    assert.equal(scan.validBytes, whole.length);
    assert.deepEqual(scan.corruptRanges, []);
  });

  it('a zero-filled tail (the unused part of a preallocated segment) ends the records: neither torn nor corrupt', () => {
    const whole = segment(1, rows(1, 2));
    for (const zeros of [1, 15, 64, 200 * 1024]) {
      const scan = scanSegment(Buffer.concat([whole, Buffer.alloc(zeros)]));
      assert.deepEqual(scan.records.map((r) => r.seq), [1, 2], `${zeros} zero bytes`);
      assert.equal(scan.tornTail, false);
      assert.equal(scan.validBytes, whole.length);
      assert.deepEqual(scan.corruptRanges, []);
    }
  });

  it('in a preallocated segment, a damaged last record before the zeros is corruption, its range ending where the zeros start', () => {
    const payloads = rows(1, 3);
    const written = Buffer.from(segment(1, payloads));
    const lastOffset = written.length - encodeRecord(3, payloads[2]!).length;
    written[written.length - 1]! ^= 0x01;
    const scan = scanSegment(Buffer.concat([written, Buffer.alloc(100 * 1024)]));
    assert.deepEqual(scan.records.map((r) => r.seq), [1, 2]);
    assert.equal(scan.tornTail, false);
    assert.deepEqual(scan.corruptRanges, [{ offset: lastOffset, bytes: written.length - lastOffset }]);
  });

  it('in a preallocated segment, an append cut short by a crash (its declared length runs into the zeros) is torn, not corrupt', () => {
    const whole = segment(1, rows(1, 2));
    const cut = encodeRecord(3, rows(3, 1)[0]!).subarray(0, HEADER_BYTES + 5);
    const scan = scanSegment(Buffer.concat([whole, cut, Buffer.alloc(64 * 1024)]));
    assert.deepEqual(scan.records.map((r) => r.seq), [1, 2]);
    assert.equal(scan.tornTail, true);
    assert.equal(scan.validBytes, whole.length);
    assert.deepEqual(scan.corruptRanges, []);
  });

  it('round-trips a cancellation record: the sequence numbers it withdraws, stored as ranges', () => {
    const record = encodeCancellation(40, [7, 3, 4, 5, 9, 10, 4]);
    assert.equal(record.length, HEADER_BYTES + 3 * 12, 'three ranges: 3-5, 7, 9-10');
    const step = parseRecordAt(record, 0);
    assert.equal(step.kind, 'record');
    assert.equal(step.kind === 'record' && step.record.seq, 40);
    assert.deepEqual(step.kind === 'record' && step.record.cancels, [3, 4, 5, 7, 9, 10]);
    const event = parseRecordAt(encodeRecord(41, 'row\n'), 0);
    assert.equal(event.kind === 'record' && event.record.cancels, undefined, 'an event record (format 1) cancels nothing');
  });

  it('a flipped type bit never turns an event into a cancellation or back', () => {
    const event = Buffer.from(encodeRecord(5, Buffer.alloc(24, 1)));
    event[3]! ^= 0x01; // type 0 → 1, length unchanged (24 bytes: two valid ranges)
    assert.equal(parseRecordAt(event, 0).kind, 'corrupt');
    const cancellation = Buffer.from(encodeCancellation(6, [1, 2]));
    cancellation[3]! ^= 0x01; // type 1 → 0
    assert.equal(parseRecordAt(cancellation, 0).kind, 'corrupt');
    const unknownType = Buffer.from(encodeCancellation(6, [1, 2]));
    unknownType[3] = 0x07;
    assert.equal(parseRecordAt(unknownType, 0).kind, 'corrupt');
  });

  it('skips a corrupt record in the middle and resynchronises on the next one', () => {
    const payloads = rows(1, 5);
    const whole = segment(1, payloads);
    const thirdOffset = encodeRecord(1, payloads[0]!).length + encodeRecord(2, payloads[1]!).length;
    const damaged = Buffer.from(whole);
    damaged[thirdOffset + HEADER_BYTES + 2]! ^= 0xff;
    const scan = scanSegment(damaged);
    assert.deepEqual(scan.records.map((r) => r.seq), [1, 2, 4, 5]);
    assert.equal(scan.corruptRanges.length, 1);
    assert.equal(scan.corruptRanges[0]!.offset, thirdOffset);
    assert.equal(scan.tornTail, false);
  });
});

describe('WAL recovery', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'ingest-wal-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('truncates a torn tail, quarantines a corrupt middle record, and replays the rest in order', async () => {
    const first = segment(1, rows(1, 3));
    const secondPayloads = rows(4, 4);
    const second = Buffer.from(segment(4, secondPayloads));
    second[encodeRecord(4, secondPayloads[0]!).length + HEADER_BYTES]! ^= 0x01; // record 5 damaged
    const torn = Buffer.concat([second, encodeRecord(8, Buffer.from('cut short')).subarray(0, 10)]);
    await writeFile(path.join(directory, segmentName(1)), first);
    await writeFile(path.join(directory, segmentName(4)), torn);

    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((r) => r.seq), [1, 2, 3, 4, 6, 7]);
    assert.equal(recovery.tornTails, 1);
    assert.equal(recovery.quarantined.length, 1);
    assert.equal(recovery.nextSeq, 8);
    assert.equal((await readFile(path.join(directory, segmentName(4)))).length, second.length, 'the torn tail was cut off');
    const quarantined = await readdir(quarantineDirectory(directory));
    assert.equal(quarantined.length, 1);

    const again = await recoverWal(directory);
    assert.equal(again.tornTails, 0, 'a second recovery finds a clean tail: no crash loop');
    assert.equal(again.quarantined.length, 0, 'the corrupt range is not quarantined (or counted) twice');
    assert.deepEqual(again.records.map((r) => r.seq), [1, 2, 3, 4, 6, 7]);
  });

  it('quarantines and reports a complete final record that fails its checksum instead of truncating it away', async () => {
    const payloads = rows(1, 3);
    const damaged = Buffer.from(segment(1, payloads));
    damaged[damaged.length - 1]! ^= 0x01;
    await writeFile(path.join(directory, segmentName(1)), damaged);
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((r) => r.seq), [1, 2]);
    assert.equal(recovery.tornTails, 0, 'not reported as a harmless torn write');
    assert.equal(recovery.quarantined.length, 1, 'reported as corruption');
    assert.equal(recovery.quarantined[0]!.bytes, encodeRecord(3, payloads[2]!).length);
    assert.equal((await readFile(path.join(directory, segmentName(1)))).length, damaged.length, 'the segment is not truncated');
    assert.equal((await readdir(quarantineDirectory(directory))).length, 1);
  });

  it('never replays a cancelled record, and keeps the cancellation until the records it withdraws are gone', async () => {
    // Segment 1: events 1-5, of which 2 and 3 were refused; segment 6: their cancellation (seq 6) and event 7.
    await writeFile(path.join(directory, segmentName(1)), segment(1, rows(1, 5)));
    await writeFile(path.join(directory, segmentName(6)), Buffer.concat([encodeCancellation(6, [2, 3]), encodeRecord(7, rows(7, 1)[0]!)]));
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records.map((r) => r.seq), [1, 4, 5, 7]);
    assert.equal(recovery.cancelled, 2);
    assert.equal(recovery.nextSeq, 8);
    assert.deepEqual(recovery.segments.map((s) => [s.name, s.records, s.dependsOn]), [
      [segmentName(1), 3, []],
      [segmentName(6), 1, [segmentName(1)]],
    ]);

    const wal = await WriteAheadLog.open({ directory, segmentMaxBytes: 1 << 20, maxBytes: 1 << 20, now: () => 0, onFatal: () => {} }, recovery.segments, recovery.nextSeq);
    wal.settle([7]);
    await wal.idle();
    const names = async () => (await readdir(directory)).filter((name) => name.endsWith('.wal')).sort();
    assert.deepEqual(await names(), [segmentName(1), segmentName(6), segmentName(8)], 'the cancellation outlives nothing it protects');
    assert.deepEqual((await recoverWal(directory)).records.map((r) => r.seq), [1, 4, 5, 7], 'a crash now still skips 2 and 3 (7 comes back as a duplicate)');
    wal.settle([1, 4, 5]);
    await wal.idle();
    // (The recovery above, run beside the open log, deleted its empty current segment 8.)
    assert.deepEqual((await names()).filter((name) => name !== segmentName(8)), [], 'both old segments are gone');
    await wal.close();
  });

  it('deletes at open a segment whose every record was cancelled', async () => {
    await writeFile(path.join(directory, segmentName(1)), Buffer.concat([segment(1, rows(1, 2)), encodeCancellation(3, [1, 2])]));
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records, []);
    const wal = await WriteAheadLog.open({ directory, segmentMaxBytes: 1 << 20, maxBytes: 1 << 20, now: () => 0, onFatal: () => {} }, recovery.segments, recovery.nextSeq);
    assert.deepEqual((await readdir(directory)).filter((name) => name.endsWith('.wal')), [segmentName(4)]);
    await wal.close();
  });

  it('recovers nothing from an empty directory and starts at sequence 1', async () => {
    const recovery = await recoverWal(directory);
    assert.deepEqual(recovery.records, []);
    assert.equal(recovery.nextSeq, 1);
  });
});
