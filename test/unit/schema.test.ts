import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeEventRow } from '../../src/event/copy-row.ts';
import { parseExactJson } from '../../src/event/exact-json.ts';
import { auditEventSchema, isStorableTimestamp } from '../../src/event/schema.ts';

const valid = {
  id: '0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c6d',
  tenant: 'acme',
  occurred_at: '2026-11-22T05:00:00.000Z',
  action: 'document.update',
  actor: { id: 'user:42', type: 'user', name: 'Ada' },
  target: { id: 'doc:9', type: 'document', name: 'Q3 plan' },
  outcome: 'success',
  source_ip: '203.0.113.7',
  user_agent: 'billing-service/2.3',
  metadata: { request_id: 'r-1' },
};

function deepNest(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < depth; i += 1) value = { next: value };
  return value;
}

describe('auditEventSchema', () => {
  it('accepts the documented example and defaults outcome to unknown', () => {
    assert.equal(auditEventSchema.parse(valid).outcome, 'success');
    const { outcome: _omitted, ...withoutOutcome } = valid;
    assert.equal(auditEventSchema.parse(withoutOutcome).outcome, 'unknown');
  });

  const rejected: [string, Record<string, unknown>, string][] = [
    ['missing tenant', { tenant: undefined }, 'tenant'],
    ['tenant with a space', { tenant: 'ac me' }, 'tenant'],
    ['tenant starting with a dot', { tenant: '.acme' }, 'tenant'],
    ['tenant of 65 characters', { tenant: 'a'.repeat(65) }, 'tenant'],
    ['occurred_at without offset', { occurred_at: '2026-11-22T05:00:00' }, 'occurred_at'],
    ['occurred_at on 30 February', { occurred_at: '2026-02-30T05:00:00Z' }, 'occurred_at'],
    ['occurred_at in year 0', { occurred_at: '0000-01-01T00:00:00Z' }, 'occurred_at'],
    ['occurred_at in year 10000', { occurred_at: '10000-01-01T00:00:00Z' }, 'occurred_at'],
    ['occurred_at as a number', { occurred_at: 1732251600000 }, 'occurred_at'],
    ['empty action', { action: '' }, 'action'],
    ['action of 129 characters', { action: 'a'.repeat(129) }, 'action'],
    ['action holding NUL', { action: 'a\u0000b' }, 'action'],
    ['actor.id with a lone surrogate', { actor: { id: 'x\ud800y' } }, 'actor.id'],
    ['actor with an unknown field', { actor: { id: 'x', role: 'admin' } }, 'actor'],
    ['outcome not in the enum', { outcome: 'maybe' }, 'outcome'],
    ['invalid IPv4', { source_ip: '300.1.1.1' }, 'source_ip'],
    ['IPv6 with a zone id', { source_ip: 'fe80::1%eth0' }, 'source_ip'],
    ['user_agent over 512', { user_agent: 'u'.repeat(513) }, 'user_agent'],
    ['id that is not a UUID', { id: 'not-a-uuid' }, 'id'],
    ['metadata that is an array', { metadata: [1, 2] }, 'metadata'],
    ['metadata over 8 KiB', { metadata: { blob: 'x'.repeat(8200) } }, 'metadata'],
    ['metadata nested 9 deep', { metadata: deepNest(9) }, 'metadata'],
    ['metadata with NUL in a value', { metadata: { a: 'x\u0000' } }, 'metadata'],
    ['metadata with a lone surrogate in a key', { metadata: { ['k\udc00']: 1 } }, 'metadata'],
    ['metadata with a __proto__ key', { metadata: JSON.parse('{"a":{"__proto__":{"x":1}}}') }, 'metadata'],
    ['an unknown top-level field', { extra: true }, '(body)'],
  ];
  for (const [name, change, path] of rejected) {
    it(`rejects ${name}`, () => {
      const result = auditEventSchema.safeParse({ ...valid, ...change });
      assert.equal(result.success, false);
      const paths = result.error.issues.map((issue) => issue.path.join('.') || '(body)');
      assert.ok(paths.includes(path), `expected an issue at ${path}, got ${paths.join(', ')}`);
    });
  }

  it('accepts IPv6, offsets, metadata nested exactly 8 deep', () => {
    const result = auditEventSchema.safeParse({
      ...valid,
      source_ip: '2001:db8::1',
      occurred_at: '2026-11-22T05:00:00.123456+05:30',
      metadata: deepNest(8),
    });
    assert.equal(result.success, true);
  });
});

describe('isStorableTimestamp', () => {
  const table: [string, boolean][] = [
    ['2024-02-29T00:00:00Z', true],
    ['2023-02-29T00:00:00Z', false],
    ['1900-02-29T00:00:00Z', false],
    ['2000-02-29T00:00:00Z', true],
    ['0001-01-01T00:00:00+00:00', true],
    ['9999-12-31T23:59:59.999999Z', true],
    ['2026-11-22T24:00:00Z', false],
    ['2026-11-22T05:00:00+16:00', false],
    ['2026-11-22 05:00:00Z', true],
    ['2026-11-22', false],
  ];
  for (const [input, expected] of table) it(`${input} → ${expected}`, () => assert.equal(isStorableTimestamp(input), expected));

  it('answers as the regex it replaced, on generated strings near the format', () => {
    const part = (from: string) => fc.string({ unit: fc.constantFrom(...from), minLength: 0, maxLength: 4 });
    const near = fc
      .tuple(
        fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 }),
        fc.constantFrom('T', 't', ' ', 'x'), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 }), fc.integer({ min: 0, max: 61 }),
        fc.option(part('0123456789'), { nil: undefined }).map((f) => (f === undefined ? '' : `.${f}${f.length > 2 ? '123456' : ''}`)),
        fc.constantFrom('Z', 'z', '+01:00', '-15:59', '+16:00', '+05:60', '+0100', '', 'Z ', '+1:00'),
      )
      .map(([y, mo, d, sep, h, mi, s, fraction, zone]) => {
        const pad = (n: number, width: number) => String(n).padStart(width, '0');
        return `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}${sep}${pad(h, 2)}:${pad(mi, 2)}:${pad(s, 2)}${fraction}${zone}`;
      });
    fc.assert(
      fc.property(fc.oneof(near, fc.string({ maxLength: 40 }), part('0123456789-:TZ+. ')), (input) => {
        assert.equal(isStorableTimestamp(input), timestampByRegex(input), input);
      }),
      { numRuns: 20_000 },
    );
  });
});

/** The regex isStorableTimestamp used to be, kept as the oracle for its hand-written form. */
function timestampByRegex(value: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/.exec(value);
  if (!match) return false;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const daysInMonth = month === 2 && leap ? 29 : [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
  if (day > daysInMonth || hour > 23 || minute > 59 || second > 59) return false;
  return match[9] === undefined || (Number(match[9]) <= 15 && Number(match[10]) <= 59);
}

describe('metadata that nests far too deep', () => {
  const wrapArrays = (levels: number): unknown => JSON.parse(`${'['.repeat(levels)}1${']'.repeat(levels)}`);
  const wrapObjects = (levels: number): unknown => JSON.parse(`${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`);
  for (const [name, metadata] of [
    ['10,000 levels of arrays', { a: wrapArrays(10_000) }],
    ['5,000 levels of objects', wrapObjects(5_000)],
    ['100,000 levels of objects', wrapObjects(100_000)],
  ] as const) {
    it(`refuses ${name} as a field issue, without overflowing the stack`, () => {
      const result = auditEventSchema.safeParse({ ...valid, metadata });
      assert.equal(result.success, false);
      assert.deepEqual(result.error?.issues.map((issue) => [issue.path.join('.'), issue.message]), [['metadata', 'nests deeper than 8 levels']]);
    });
  }
});

describe('metadata numbers kept exact', () => {
  it('encodes the digits as sent into the COPY row, and JSON.stringify output otherwise', () => {
    const text = JSON.stringify({ ...valid, metadata: '@M@' }).replace('"@M@"', '{"big":12345678901234567890,"tiny":1e-400,"plain":0.5}');
    const event = auditEventSchema.parse(parseExactJson(text));
    const row = encodeEventRow(event, valid.id, '2026-11-22T05:00:01.000Z');
    assert.ok(row.endsWith('\t{"big":12345678901234567890,"tiny":1e-400,"plain":0.5}\n'), row);
    const plain = encodeEventRow(auditEventSchema.parse(valid), valid.id, '2026-11-22T05:00:01.000Z');
    assert.ok(plain.endsWith('\t{"request_id":"r-1"}\n'), plain);
  });

  it('counts the exact text toward the 8 KiB limit', () => {
    const digits = '1'.repeat(8200);
    const text = JSON.stringify({ ...valid, metadata: '@M@' }).replace('"@M@"', `{"n":${digits}}`);
    const result = auditEventSchema.safeParse(parseExactJson(text));
    assert.equal(result.success, false);
    assert.match(result.error.issues[0]!.message, /at most 8192 bytes/);
  });
});
