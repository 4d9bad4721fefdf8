import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeEventRow } from '../../src/event/copy-row.ts';
import { parseExactJson } from '../../src/event/exact-json.ts';
import { fastValidate } from '../../src/event/fast-validate.ts';
import { auditEventSchema } from '../../src/event/schema.ts';

const ID = '0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c6d';
const RECEIVED_AT = '2026-12-01T20:00:00.000Z';

/** Strings near every boundary the schema has: empty, long, NUL, lone surrogates, tabs, non-ASCII. */
const edgyString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom('', 'a', 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(128), 'x'.repeat(129), 'x'.repeat(256), 'x'.repeat(257), 'x'.repeat(513)),
  fc.constantFrom('a\u0000b', '\ud800', 'ok\udc00', 'tab\there', 'new\nline', 'Amélie', '😀', 'back\\slash'),
);
const anyValue = fc.oneof(edgyString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant([]), fc.constant({}));

const validText = (max: number) => fc.oneof(fc.string({ minLength: 1, maxLength: Math.min(max, 30) }), fc.constantFrom('x'.repeat(max), 'Amélie', 'tab\there', '😀', 'back\\slash'));
const validParty = (idRequired: boolean) =>
  fc.record({ id: validText(256), type: validText(128), name: validText(256) }, { requiredKeys: idRequired ? ['id'] : [] });
const validTimestamp = fc.oneof(
  fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('2026-11-22T05:00:00Z', '2026-11-22 05:00:00.123456789+01:00', '2024-02-29T00:00:00Z', '2026-11-22t05:00:00z', '2026-11-22T05:00:00-15:59'),
);
const validMetadata = fc.oneof(
  fc.dictionary(fc.string({ maxLength: 8 }).filter((key) => !['__proto__', 'constructor', 'prototype'].includes(key)), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
  fc.constant({ big: '@BIG@' }),
);

/** Events whose every field is valid (or absent). */
const validEvent = fc.record(
  {
    id: fc.oneof(fc.uuid(), fc.constantFrom(ID, ID.toUpperCase(), '00000000-0000-0000-0000-000000000000')),
    tenant: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    occurred_at: validTimestamp,
    action: validText(128),
    actor: validParty(true),
    target: validParty(false),
    outcome: fc.constantFrom('success', 'failure', 'unknown'),
    source_ip: fc.oneof(fc.ipV4(), fc.ipV6()),
    user_agent: validText(512),
    metadata: validMetadata,
  },
  { requiredKeys: ['tenant', 'occurred_at', 'action', 'actor'] },
);

/** An invalid (or doubtful) value for each field, and for keys the schema does not have. */
const invalidParty = fc.oneof(
  anyValue,
  fc.record({ id: fc.oneof(edgyString, anyValue), type: edgyString, name: edgyString, extra: anyValue }, { requiredKeys: [] }),
);
const invalidField = fc.oneof(
  fc.tuple(fc.constant('id'), fc.oneof(fc.constantFrom('not-a-uuid', ID + ' '), anyValue)),
  fc.tuple(fc.constant('tenant'), fc.oneof(edgyString, anyValue, fc.constantFrom('-acme', 'acme\n', 'a'.repeat(65)))),
  fc.tuple(
    fc.constant('occurred_at'),
    fc.oneof(
      anyValue,
      fc.constantFrom(
        '2023-02-29T00:00:00Z', '2026-13-01T00:00:00Z', '2026-11-22T24:00:00Z', '2026-11-22T05:00:60Z', '2026-11-22T05:00:00+16:00',
        '2026-11-22T05:00:00', '0000-01-01T00:00:00Z', '2026-11-22T05:00:00.0000000000Z', '2026-11-22T05:00:00.000000000+01:00' + ' '.repeat(10),
      ),
    ),
  ),
  fc.tuple(fc.constantFrom('action', 'user_agent'), fc.oneof(edgyString, anyValue)),
  fc.tuple(fc.constantFrom('actor', 'target'), invalidParty),
  fc.tuple(fc.constant('outcome'), fc.oneof(fc.constantFrom('SUCCESS', ''), anyValue)),
  fc.tuple(fc.constant('source_ip'), fc.oneof(fc.constantFrom('fe80::1%eth0', '1.2.3', '::ffff:' + '1'.repeat(60), '01.2.3.4'), anyValue)),
  fc.tuple(
    fc.constant('metadata'),
    fc.oneof(
      fc.dictionary(fc.constantFrom('constructor', 'prototype', '', 'a\u0000', '\ud800'), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1 }),
      fc.jsonValue({ maxDepth: 12 }),
      fc.constant({ long: 'x'.repeat(9000) }),
      fc.constant({ deep: [[[[[[[[[[1]]]]]]]]]] }),
      fc.constant({ s: 'nul\u0000' }),
      anyValue,
    ),
  ),
  fc.tuple(fc.constantFrom('unexpected', 'Tenant', 'toString'), anyValue),
);

/** A valid event with none, one or two fields replaced by doubtful values. */
const candidate = fc.tuple(validEvent, fc.array(invalidField, { maxLength: 2 })).map(([event, changes]) => {
  const changed: Record<string, unknown> = { ...event };
  for (const [key, value] of changes) changed[key] = value;
  return changed;
});

/** The body as the service receives it: JSON text, parsed with numbers kept exact. */
function asReceived(value: unknown): unknown {
  return parseExactJson(JSON.stringify(value).replace('"@BIG@"', '12345678901234567890.50'));
}

describe('fastValidate (the hand-written check of the common valid event)', () => {
  it('accepts a JSON body exactly when zod does, with the same COPY row', () => {
    fc.assert(
      fc.property(candidate, (generated) => {
        // A body with a prototype key never gets this far: the body parser refuses it.
        if (JSON.stringify(generated).includes('"__proto__"')) return;
        const fast = fastValidate(asReceived(generated));
        const parsed = auditEventSchema.safeParse(asReceived(generated));
        assert.equal(fast !== undefined, parsed.success, parsed.success ? 'zod accepts what the fast path refused' : 'the fast path accepts what zod refuses');
        if (fast && parsed.success) assert.equal(encodeEventRow(fast, ID, RECEIVED_AT), encodeEventRow(parsed.data, ID, RECEIVED_AT));
      }),
      { numRuns: 5000 },
    );
  });

  it('accepts the typical valid event, defaulting outcome to unknown as zod does', () => {
    const event = { tenant: 'acme', occurred_at: '2026-11-22T05:00:00.000Z', action: 'user.login', actor: { id: 'user:1' }, metadata: { n: 1.5 } };
    const fast = fastValidate(asReceived(event));
    assert.ok(fast);
    assert.equal(fast.outcome, 'unknown');
    assert.equal(encodeEventRow(fast, ID, RECEIVED_AT), encodeEventRow(auditEventSchema.parse(asReceived(event)), ID, RECEIVED_AT));
  });

  it('leaves anything that is not a plain object to zod', () => {
    for (const body of [null, [], 'event', 7, Object.create(null) as object, new Map()]) assert.equal(fastValidate(body), undefined);
  });
});
