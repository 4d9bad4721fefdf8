import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVENT_COLUMNS, encodeCopyValue, encodeEventRow } from '../../src/event/copy-row.ts';
import { auditEventSchema } from '../../src/event/schema.ts';

describe('encodeCopyValue', () => {
  const table: [string, string | null | undefined, string][] = [
    ['null', null, '\\N'],
    ['undefined', undefined, '\\N'],
    ['plain text', 'document.update', 'document.update'],
    ['empty string', '', ''],
    ['backslash', 'a\\b', 'a\\\\b'],
    ['tab', 'a\tb', 'a\\tb'],
    ['newline', 'a\nb', 'a\\nb'],
    ['carriage return', 'a\rb', 'a\\rb'],
    ['the text \\N', '\\N', '\\\\N'],
    ['end-of-data marker \\.', '\\.', '\\\\.'],
    ['all four together', '\\\t\n\r', '\\\\\\t\\n\\r'],
    ['unicode and emoji', 'Zoë 👩‍💻 日本', 'Zoë 👩‍💻 日本'],
    ['other control characters pass', 'a\u0001\u000bb', 'a\u0001\u000bb'],
    ['JSON with escapes', '{"a":"x\\ny"}', '{"a":"x\\\\ny"}'],
  ];
  for (const [name, input, expected] of table) {
    it(name, () => assert.equal(encodeCopyValue(input), expected));
  }
});

describe('encodeEventRow', () => {
  it('encodes every column in order, with \\N for absent optional fields, newline-terminated', () => {
    const event = auditEventSchema.parse({
      tenant: 'acme',
      occurred_at: '2026-11-22T05:00:00.000Z',
      action: 'doc.update',
      actor: { id: 'user:42' },
    });
    const row = encodeEventRow(event, '0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c6d', '2026-11-22T05:00:01.000Z');
    assert.ok(row.endsWith('\n'));
    const fields = row.slice(0, -1).split('\t');
    assert.equal(fields.length, EVENT_COLUMNS.length);
    assert.deepEqual(fields, [
      '0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c6d',
      'acme',
      '2026-11-22T05:00:00.000Z',
      '2026-11-22T05:00:01.000Z',
      'doc.update',
      'user:42',
      '\\N',
      '\\N',
      '\\N',
      '\\N',
      '\\N',
      'unknown',
      '\\N',
      '\\N',
      '\\N',
    ]);
  });

  it('keeps a row on one line whatever the metadata holds', () => {
    const event = auditEventSchema.parse({
      tenant: 'acme',
      occurred_at: '2026-11-22T05:00:00+02:00',
      action: 'a\tb',
      actor: { id: 'x\ny' },
      metadata: { note: 'line1\nline2\\', nested: { tab: '\t' } },
    });
    const row = encodeEventRow(event, '0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c6d', '2026-11-22T05:00:01.000Z');
    assert.equal(row.indexOf('\n'), row.length - 1);
    assert.equal(row.split('\t').length, EVENT_COLUMNS.length);
  });
});
