import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVENT_COLUMNS, encodeCopyValue, encodeEventRow } from '../../src/event/copy-row.ts';
import {
  decodeCopyRow,
  decodeCopyValue,
  encodeCopyColumns,
  type EventRecord,
} from '../../src/event/copy-row-decode.ts';
import { auditEventSchema } from '../../src/event/schema.ts';
import { seededRandom } from '../../bench/generators/bursty-schedule.ts';

const ID = '0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c6d';

describe('decodeCopyValue', () => {
  const table: [string, string, string | null][] = [
    ['\\N is NULL', '\\N', null],
    ['plain text', 'document.update', 'document.update'],
    ['empty string', '', ''],
    ['backslash', 'a\\\\b', 'a\\b'],
    ['tab', 'a\\tb', 'a\tb'],
    ['newline', 'a\\nb', 'a\nb'],
    ['carriage return', 'a\\rb', 'a\rb'],
    ['the text \\N', '\\\\N', '\\N'],
    ['end-of-data marker \\.', '\\\\.', '\\.'],
    ['all four together', '\\\\\\t\\n\\r', '\\\t\n\r'],
    ['escaped backslash before n', '\\\\n', '\\n'],
    ['unicode and emoji', 'Zoë 👩‍💻 日本', 'Zoë 👩‍💻 日本'],
    ['JSON with escapes', '{"a":"x\\\\ny"}', '{"a":"x\\ny"}'],
  ];
  for (const [name, input, expected] of table) {
    it(name, () => {
      assert.equal(decodeCopyValue(input), expected);
      assert.equal(encodeCopyValue(expected), input, 'the encoder maps it back');
    });
  }

  const refused: [string, string][] = [
    ['an escape the encoder never writes', 'a\\xb'],
    ['octal escapes', '\\101'],
    ['a lone trailing backslash', 'abc\\'],
  ];
  for (const [name, input] of refused) {
    it(`refuses ${name}`, () => {
      assert.throws(() => decodeCopyValue(input), { code: 'EVENT_ERR_COPY_ROW_DECODE' });
    });
  }
});

describe('decodeCopyRow', () => {
  it('is the inverse of encodeEventRow, with null for absent optional fields', () => {
    const event = auditEventSchema.parse({
      tenant: 'acme',
      occurred_at: '2026-11-22T05:00:00.000Z',
      action: 'a\tb\\N',
      actor: { id: 'x\ny\r' },
      metadata: { note: 'line1\nline2\\', nested: { tab: '\t' } },
    });
    const row = encodeEventRow(event, ID, '2026-11-22T05:00:01.000Z');
    const record = decodeCopyRow(row);
    assert.deepEqual(record, {
      id: ID,
      tenant: 'acme',
      occurred_at: '2026-11-22T05:00:00.000Z',
      received_at: '2026-11-22T05:00:01.000Z',
      action: 'a\tb\\N',
      actor_id: 'x\ny\r',
      actor_type: null,
      actor_name: null,
      target_id: null,
      target_type: null,
      target_name: null,
      outcome: 'unknown',
      source_ip: null,
      user_agent: null,
      metadata: JSON.stringify({ note: 'line1\nline2\\', nested: { tab: '\t' } }),
    });
    assert.equal(encodeCopyColumns(record), row);
  });

  it('takes the row with or without its trailing newline', () => {
    const row = encodeCopyColumns(recordOf(() => 'v'));
    assert.deepEqual(decodeCopyRow(row), decodeCopyRow(row.slice(0, -1)));
  });

  it('refuses a row with the wrong number of fields or a raw line break', () => {
    const row = encodeCopyColumns(recordOf(() => 'v'));
    assert.throws(() => decodeCopyRow(`extra\t${row}`), { code: 'EVENT_ERR_COPY_ROW_DECODE', message: /16 fields/ });
    assert.throws(() => decodeCopyRow(row.replace('\t', '')), { code: 'EVENT_ERR_COPY_ROW_DECODE' });
    assert.throws(() => decodeCopyRow(row.replace('v', 'a\rb')), { code: 'EVENT_ERR_COPY_ROW_DECODE' });
    assert.throws(() => decodeCopyRow(`${row}${row}`), { code: 'EVENT_ERR_COPY_ROW_DECODE' });
  });
});

function recordOf(value: (column: string) => string | null): EventRecord {
  return Object.fromEntries(EVENT_COLUMNS.map((column) => [column, value(column)])) as EventRecord;
}


const PIECES = ['\t', '\n', '\r', '\\', '\\N', '\\.', '\\t', '\\\\', 'N', '.', ' ', 'a', 'Zoë', '👩‍💻', '日本', '"', '{}', '\u0001', '\u000b', '\r\n'];

describe('round trip over awkward strings', () => {
  for (const seed of [1, 2, 3, 42, 2026]) {
    it(`decode(encode(record)) is the record and encode(decode(row)) is the row (seed ${seed})`, () => {
      const next = seededRandom(seed);
      const text = () => {
        const length = Math.floor(next() * 12);
        let value = '';
        for (let i = 0; i < length; i += 1) value += PIECES[Math.floor(next() * PIECES.length)];
        return value;
      };
      for (let trial = 0; trial < 500; trial += 1) {
        const record = recordOf(() => (next() < 0.15 ? null : text()));
        const row = encodeCopyColumns(record);
        assert.equal(row.indexOf('\n'), row.length - 1, 'one line, newline-terminated');
        assert.deepEqual(decodeCopyRow(row), record, `seed ${seed}, trial ${trial}`);
        assert.equal(encodeCopyColumns(decodeCopyRow(row)), row);
      }
    });
  }

  it('keeps the empty string and NULL apart', () => {
    const record = recordOf((column) => (column === 'actor_name' ? '' : column === 'target_id' ? null : 'x'));
    const decoded = decodeCopyRow(encodeCopyColumns(record));
    assert.equal(decoded.actor_name, '');
    assert.equal(decoded.target_id, null);
  });
});
