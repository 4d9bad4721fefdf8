/**
 * `npm run bench:serialisation`
 *
 * Serialisation on the hot path (seed task 28): what the service does per single event with its
 * JSON body — UTF-8 check and decode (src/http/body-text.ts), secure parse keeping exact digits
 * (src/event/exact-json.ts), the common-path validation (src/event/fast-validate.ts) — against the
 * same event as MessagePack (msgpackr's unpack, then the same validation); and on the way out the
 * COPY text row (src/event/copy-row.ts) against a MessagePack record. Per-event CPU is set against
 * the service's measured CPU per event (README: ~93–167 µs of server CPU per single event), which
 * is what decides whether a binary format pays. No server runs.
 */
import { pack, unpack } from 'msgpackr';
import { encodeEventRow } from '../src/event/copy-row.ts';
import { parseExactJson } from '../src/event/exact-json.ts';
import { fastValidate } from '../src/event/fast-validate.ts';
import { newEventId } from '../src/event/event-id.ts';
import { bodyText } from '../src/http/body-text.ts';
import { makeEvent } from './lib/event-body.ts';
import { runMicro, throughput } from './lib/micro.ts';
import { fmt } from './lib/scenario.ts';

const EVENTS = 1000;
/** Server CPU per single event in the README's hot-path runs (µs): the lower and upper figures. */
const SERVER_CPU_US_PER_EVENT = [93, 167] as const;

await runMicro('serialisation', `${EVENTS} distinct benchmark events (bench/lib/event-body.ts); msgpackr; best of 5 rounds of ≥ 300 ms`, () => {
  const events = Array.from({ length: EVENTS }, (_, i) => makeEvent(i));
  const jsonBodies = events.map((e) => Buffer.from(JSON.stringify(e)));
  const packBodies = events.map((e) => pack(e));
  let kept = 0;
  const decodeJson = throughput(() => {
    for (const body of jsonBodies) if (fastValidate(parseExactJson(bodyText(body, 'application/json')))) kept++;
  }, EVENTS);
  const decodePack = throughput(() => {
    for (const body of packBodies) if (fastValidate(unpack(body))) kept++;
  }, EVENTS);
  const validated = events.map((e) => fastValidate(e)!);
  const receivedAt = new Date().toISOString();
  const ids = events.map(() => newEventId());
  const encodeRow = throughput(() => {
    for (let i = 0; i < EVENTS; i++) kept += encodeEventRow(validated[i]!, ids[i]!, receivedAt).length;
  }, EVENTS);
  const encodePack = throughput(() => {
    for (let i = 0; i < EVENTS; i++) kept += pack({ id: ids[i], received_at: receivedAt, ...validated[i] }).length;
  }, EVENTS);
  const rows = events.map((_, i) => encodeEventRow(validated[i]!, ids[i]!, receivedAt));
  const mean = (xs: readonly { length: number }[]) => xs.reduce((s, x) => s + x.length, 0) / xs.length;
  const us = (perSecond: number) => 1e6 / perSecond;
  const saved = us(decodeJson.best) - us(decodePack.best);
  const share = (microseconds: number) => SERVER_CPU_US_PER_EVENT.map((cpu) => `${((microseconds / cpu) * 100).toFixed(1)} %`).join(' – ');
  const lines = [
    '## Serialisation: JSON (the service) vs MessagePack, per event',
    '',
    '| step | JSON: µs/event | MessagePack: µs/event | bytes/event JSON / MessagePack |',
    '| --- | ---: | ---: | ---: |',
    `| request body → validated event (UTF-8 check + exact-digit secure parse + fastValidate vs unpack + fastValidate) | ${us(decodeJson.best).toFixed(2)} | ${us(decodePack.best).toFixed(2)} | ${fmt(mean(jsonBodies))} / ${fmt(mean(packBodies))} |`,
    `| validated event → stored form (COPY text row vs a packed record) | ${us(encodeRow.best).toFixed(2)} | ${us(encodePack.best).toFixed(2)} | ${fmt(mean(rows))} / — |`,
    '',
    `Decoding MessagePack instead of JSON would save ${saved.toFixed(2)} µs per event: ${share(saved)} of the service's measured server CPU per single event (${SERVER_CPU_US_PER_EVENT.join('–')} µs). ${saved / SERVER_CPU_US_PER_EVENT[0] < 0.05 ? 'Below 5 %: it does not pay on the hot path (clients would need a second format, and MessagePack has no exact-digit numbers for metadata: 1e400 or 12345678901234567890 would not survive).' : 'Above 5 %: worth a measured end-to-end trial.'}`,
    '',
    '### Method',
    '',
    '- JSON: each body as the service receives it (a Buffer), through bodyText (UTF-8 validation, charset), parseExactJson (secure-json-parse, lossless re-parse only when digits could be lost) and fastValidate; MessagePack: msgpackr unpack of the same event packed, then fastValidate. Encoding: encodeEventRow (what the WAL and COPY carry) vs msgpackr pack of the same fields.',
    `- (checksum ${kept % 7})`,
  ];
  return { markdown: lines.join('\n'), json: { decodeJson, decodePack, encodeRow, encodePack, jsonBytes: mean(jsonBodies), packBytes: mean(packBodies) } };
});
