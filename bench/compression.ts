/**
 * `npm run bench:compression`
 *
 * Compression needs batching. The service's write-ahead log stores each event as a record (16-byte
 * header + the event's COPY row, src/wal/record-format.ts) and writes one group per fdatasync;
 * the COPY sink sends the same rows per batch. Here the real records of N benchmark events
 * (distinct ids, tenants, actors) are compressed as one unit per group / batch — what a
 * compressing WAL, spill file or forwarding path would do — for N from 1 (linger 0: a group per
 * event) to a filled 500-event batch. No service runs: the bytes are those the service would write.
 */
import path from 'node:path';
import { brotliCompressSync, constants, deflateRawSync, gzipSync } from 'node:zlib';
import { encodeEventRow } from '../src/event/copy-row.ts';
import { newEventId } from '../src/event/event-id.ts';
import { auditEventSchema } from '../src/event/schema.ts';
import { encodeRecord } from '../src/wal/record-format.ts';
import { makeEvent } from './lib/event-body.ts';
import { runMicro, throughput } from './lib/micro.ts';
import { lineChart, writeFigure, type Datum } from './lib/plot.ts';
import { fmt } from './lib/scenario.ts';

const GROUP_SIZES = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];
const EVENTS = 10_000;

const codecs: Record<string, (input: Buffer) => Buffer> = {
  'gzip -6': (input) => gzipSync(input, { level: 6 }),
  'gzip -1': (input) => gzipSync(input, { level: 1 }),
  'deflate-raw -6': (input) => deflateRawSync(input, { level: 6 }),
  'brotli q4': (input) => brotliCompressSync(input, { params: { [constants.BROTLI_PARAM_QUALITY]: 4, [constants.BROTLI_PARAM_SIZE_HINT]: input.length } }),
};

await runMicro('compression', `WAL records of ${fmt(EVENTS)} benchmark events (bench/lib/event-body.ts, 300–400 bytes of JSON each), compressed per group; node:zlib`, async (runDir) => {
  const receivedAt = new Date().toISOString();
  const records = Array.from({ length: EVENTS }, (_, i) => encodeRecord(i + 1, encodeEventRow(auditEventSchema.parse(makeEvent(i)), newEventId(), receivedAt)));
  const rawPerEvent = records.reduce((sum, r) => sum + r.length, 0) / EVENTS;
  const rows: { codec: string; group: number; bytesPerEvent: number; ratio: number; mbPerSecond: number }[] = [];
  for (const [codec, compress] of Object.entries(codecs)) {
    for (const group of GROUP_SIZES) {
      const groups: Buffer[] = [];
      for (let i = 0; i < EVENTS; i += group) groups.push(Buffer.concat(records.slice(i, i + group)));
      const compressed = groups.reduce((sum, g) => sum + compress(g).length, 0);
      const sample = groups.slice(0, Math.max(1, Math.ceil(500 / group)));
      const sampleBytes = sample.reduce((sum, g) => sum + g.length, 0);
      const speed = throughput(() => sample.forEach((g) => compress(g)), sampleBytes, { minMs: 150, rounds: 3 });
      rows.push({ codec, group, bytesPerEvent: compressed / EVENTS, ratio: (rawPerEvent * EVENTS) / compressed, mbPerSecond: speed.median / 1e6 });
    }
  }
  const data: Datum[] = rows.map((r) => ({ codec: r.codec, group: r.group, ratio: r.ratio }));
  const figure = await writeFigure(
    runDir,
    lineChart({ name: 'compression-by-batch', title: 'Compression ratio of WAL records by events per group (batch)', data, x: { field: 'group', title: 'events compressed together (log)', scale: { type: 'log' } }, y: { field: 'ratio', title: 'raw ÷ compressed' }, series: { field: 'codec', title: 'codec' }, points: true }),
  );
  const lines = [
    `## Compression needs batching: WAL records (${rawPerEvent.toFixed(0)} bytes per event raw), compressed per group`,
    '',
    `| events per group | ${Object.keys(codecs).map((c) => `${c}: bytes/event (ratio)`).join(' | ')} |`,
    `| ---: | ${Object.keys(codecs).map(() => '---:').join(' | ')} |`,
  ];
  for (const group of GROUP_SIZES) {
    const cells = Object.keys(codecs).map((codec) => {
      const r = rows.find((row) => row.codec === codec && row.group === group)!;
      return `${r.bytesPerEvent.toFixed(0)} (${r.ratio.toFixed(2)}×)`;
    });
    lines.push(`| ${group} | ${cells.join(' | ')} |`);
  }
  lines.push(
    '',
    `| codec | compression speed MB/s (raw input, 500-event groups) |`,
    '| --- | ---: |',
    ...Object.keys(codecs).map((codec) => `| ${codec} | ${rows.find((r) => r.codec === codec && r.group === 500)!.mbPerSecond.toFixed(0)} |`),
    '',
    `Figure: ${path.basename(figure.svg)} (and .png)`,
    '',
    '### Method',
    '',
    '- Each event: validated by the service\'s schema, encoded by encodeEventRow with a fresh UUIDv7 and one received_at, framed by the WAL\'s encodeRecord (16-byte header with CRC32C and sequence number). Groups of N consecutive records are concatenated and each group compressed on its own (a fresh compressor per group, as a per-group or per-batch frame would need to be readable alone after a crash).',
    '- bytes/event: compressed bytes of all groups ÷ events; ratio: raw ÷ compressed.',
  );
  return { markdown: lines.join('\n'), json: { rawPerEvent, rows } };
});
