import { isIP } from 'node:net';
import { z } from 'zod';
import { isExactNumber, stringifyExactJson } from './exact-json.ts';

/** PostgreSQL rejects U+0000 in text and jsonb, and lone surrogates cannot be encoded as UTF-8. */
export function isStorableText(value: string): boolean {
  return !value.includes('\u0000') && value.isWellFormed();
}

const storableText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine(isStorableText, { message: 'must not contain NUL characters or unpaired surrogates' });

export const METADATA_MAX_BYTES = 8192;
export const METADATA_MAX_DEPTH = 8;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Returns a message for the first problem in a metadata value, or undefined when it can be stored.
 * Recursion stops at METADATA_MAX_DEPTH, so any nesting (10,000 levels) is answered, never a stack
 * overflow. `found.exact` is set when the value holds a number kept as sent (see exact-json.ts).
 */
export function metadataProblem(value: unknown, depth = 1, found: { exact: boolean } = { exact: false }): string | undefined {
  if (typeof value === 'string') return isStorableText(value) ? undefined : 'contains NUL or unpaired surrogates';
  if (value === null || typeof value !== 'object') return undefined;
  if (isExactNumber(value)) {
    found.exact = true;
    return undefined;
  }
  if (depth > METADATA_MAX_DEPTH) return `nests deeper than ${METADATA_MAX_DEPTH} levels`;
  if (Array.isArray(value)) {
    for (const element of value) {
      const problem = metadataProblem(element, depth + 1, found);
      if (problem) return problem;
    }
    return undefined;
  }
  // for…in, not Object.entries: no array of pairs per object (this runs for every event). A parsed
  // or plain object has no enumerable inherited keys, so these are its own keys.
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    if (FORBIDDEN_KEYS.has(key)) return `has the forbidden key "${key}"`;
    if (!isStorableText(key) && key !== '') return 'has a key with NUL or unpaired surrogates';
    const problem = metadataProblem((value as Record<string, unknown>)[key], depth + 1, found);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * The JSON text of the metadata object validated last, serialised once by the schema (which needs
 * it for the size check) and taken by encodeEventRow (metadataJson).
 */
let lastMetadata: object | undefined;
let lastMetadataText = '';

/**
 * The metadata check after its type: a message for the first problem, or undefined when it can be
 * stored, and then its JSON text is kept for encodeEventRow. Depth, keys and strings first:
 * serialising a value nested 10,000 deep would overflow the stack.
 */
export function acceptMetadata(value: Record<string, unknown>): string | undefined {
  const found = { exact: false };
  const problem = metadataProblem(value, 1, found);
  if (problem) return problem;
  const text = found.exact ? stringifyExactJson(value) : JSON.stringify(value);
  // At most 3 UTF-8 bytes per UTF-16 unit: short text needs no byte count.
  if (text.length * 3 > METADATA_MAX_BYTES && Buffer.byteLength(text) > METADATA_MAX_BYTES) return `must be at most ${METADATA_MAX_BYTES} bytes serialised`;
  lastMetadata = value;
  lastMetadataText = text;
  return undefined;
}

/**
 * The JSON text of validated metadata, numbers as sent. An event is validated and then encoded at
 * once (prepareEvent), so the text is the one acceptMetadata just made: kept in one slot, not in a
 * WeakMap entry per event (which the collector must trace). Any other object is serialised again.
 */
export function metadataJson(metadata: Record<string, unknown>): string {
  return metadata === lastMetadata ? lastMetadataText : stringifyExactJson(metadata);
}

/**
 * True when `value` is an RFC 3339 timestamp with offset that PostgreSQL's timestamptz can store:
 *   YYYY-MM-DD('T'|'t'|' ')hh:mm:ss('.' 1-9 digits)?('Z'|'z'|('+'|'-')hh:mm), years 0001-9999
 * (PostgreSQL has no year 0), a real date, hh ≤ 23, mm and ss ≤ 59, offset hours ≤ 15.
 * Read character by character, without a regex match and its captures: this runs on every event
 * (test/unit/schema.test.ts checks it against the regex it replaced, on generated strings).
 */
export function isStorableTimestamp(value: string): boolean {
  const length = value.length;
  if (length < 20 || length > 35) return false;
  const year = digits(value, 0, 4);
  const month = digits(value, 5, 2);
  const day = digits(value, 8, 2);
  const hour = digits(value, 11, 2);
  const minute = digits(value, 14, 2);
  const second = digits(value, 17, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return false;
  if (value.charCodeAt(4) !== DASH || value.charCodeAt(7) !== DASH || value.charCodeAt(13) !== COLON || value.charCodeAt(16) !== COLON) return false;
  const separator = value.charCodeAt(10);
  if (separator !== 0x54 && separator !== 0x74 && separator !== 0x20) return false;
  const daysInMonth = month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day > daysInMonth) return false;
  let at = 19;
  if (value.charCodeAt(at) === 0x2e) {
    const start = ++at;
    while (at < length && isDigitCode(value.charCodeAt(at))) at += 1;
    if (at === start || at - start > 9) return false;
  }
  const zone = value.charCodeAt(at);
  if (zone === 0x5a || zone === 0x7a) return at + 1 === length;
  if (zone !== 0x2b && zone !== DASH) return false;
  if (at + 6 !== length || value.charCodeAt(at + 3) !== COLON) return false;
  const offsetHours = digits(value, at + 1, 2);
  const offsetMinutes = digits(value, at + 4, 2);
  return offsetHours >= 0 && offsetHours <= 15 && offsetMinutes >= 0 && offsetMinutes <= 59;
}

const DASH = 0x2d;
const COLON = 0x3a;

function isDigitCode(code: number): boolean {
  return code >= 0x30 && code <= 0x39;
}

/** The decimal number in value[from, from + count), or -1 when one of them is not a digit. */
function digits(value: string, from: number, count: number): number {
  let number = 0;
  for (let at = from; at < from + count; at += 1) {
    const code = value.charCodeAt(at);
    if (!isDigitCode(code)) return -1;
    number = number * 10 + (code - 0x30);
  }
  return number;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

export const TENANT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const ipAddress = z
  .string()
  .max(64)
  .refine((value) => isIP(value) !== 0 && !value.includes('%'), { message: 'must be an IPv4 or IPv6 address' });

const party = {
  type: storableText(128).optional(),
  name: storableText(256).optional(),
};

export const auditEventSchema = z.strictObject({
  id: z.uuid().optional(),
  tenant: z.string().regex(TENANT_PATTERN, {
    message: 'must be 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit',
  }),
  occurred_at: z.string().max(40).refine(isStorableTimestamp, {
    message: 'must be an RFC 3339 timestamp with offset, years 0001-9999',
  }),
  action: storableText(128),
  actor: z.strictObject({ id: storableText(256), ...party }),
  target: z.strictObject({ id: storableText(256).optional(), ...party }).optional(),
  outcome: z.enum(['success', 'failure', 'unknown']).default('unknown'),
  source_ip: ipAddress.optional(),
  user_agent: storableText(512).optional(),
  metadata: z
    .record(z.string(), z.unknown())
    .superRefine((value, context) => {
      const problem = acceptMetadata(value);
      if (problem) context.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
});

export type AuditEvent = z.output<typeof auditEventSchema>;
