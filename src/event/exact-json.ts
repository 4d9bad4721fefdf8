import { isLosslessNumber, LosslessNumber, parse as parseLossless, stringify as stringifyLossless } from 'lossless-json';
import secureJson from 'secure-json-parse';

/**
 * JSON that keeps every number as it was sent.
 *
 * jsonb numerics are exact, JavaScript numbers are doubles: `12345678901234567890`, `1.50`,
 * `3.14159265358979323846`, `1e400` and `1e-400` would be stored changed (or as null) if the
 * service parsed them into doubles and serialised them again. So a body is parsed natively (fast,
 * and without recursion limits) and, only when its text holds a number token that a double might
 * not reproduce, parsed again with lossless-json, whose LosslessNumber keeps the token's text;
 * `stringifyExactJson` writes that text back unchanged.
 */

/** Deeper than any valid event nests (the event, then metadata of at most 8 levels). */
const EXACT_PARSE_MAX_NESTING = 32;

const SECURE_PARSE_OPTIONS = { protoAction: 'error', constructorAction: 'error' } as const;

/**
 * A test on JSON text (that JSON.parse accepted) for a number token a double might not reproduce
 * digit for digit: one with an exponent, 16 or more digits, or a fraction ending in 0. Tokens of
 * at most 15 significant digits without those survive a double exactly (DBL_DIG is 15). This runs
 * on every event: strings are skipped with indexOf, so the cost is per token, not per character
 * (regexes were slower: `[\d.]{16}` tries every digit of every id and timestamp).
 */
export function mayLoseDigits(text: string): boolean {
  const length = text.length;
  let i = 0;
  while (i < length) {
    const ch = text.charCodeAt(i);
    if (ch === QUOTE) {
      i = endOfString(text, i + 1);
    } else if (isDigit(ch) || ch === MINUS) {
      let digits = 0;
      let lastDigit = 0;
      let point = false;
      let exponent = false;
      for (; i < length; i++) {
        const c = text.charCodeAt(i);
        if (isDigit(c)) {
          if (!exponent) {
            digits++;
            lastDigit = c;
          }
        } else if (c === POINT) point = true;
        else if (c === 0x65 || c === 0x45) exponent = true;
        else if (c !== PLUS && c !== MINUS) break;
      }
      if (exponent || digits >= 16 || (point && lastDigit === ZERO)) return true;
    } else {
      i++;
    }
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const PLUS = 0x2b;
const POINT = 0x2e;
const ZERO = 0x30;

function isDigit(ch: number): boolean {
  return ch >= ZERO && ch <= 0x39;
}

/**
 * The index after the quote that closes the string whose content starts at `from` (one indexOf per
 * quote, not a test per character). The one string skip of this module's scanners and bulk-body's.
 */
export function endOfString(text: string, from: number): number {
  for (let at = from; ; ) {
    const quote = text.indexOf('"', at);
    if (quote === -1) return text.length;
    let backslashes = 0;
    while (quote - backslashes - 1 >= from && text.charCodeAt(quote - backslashes - 1) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    at = quote + 1;
  }
}

/**
 * True when arrays and objects in `text` nest deeper than `limit` (strings are skipped). Linear, no
 * recursion: safe on any input.
 */
export function nestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === QUOTE) {
      i = endOfString(text, i + 1) - 1;
    } else if (ch === 0x7b || ch === 0x5b) {
      if (++depth > limit) return true;
    } else if (ch === 0x7d || ch === 0x5d) {
      depth--;
    }
  }
  return false;
}

/** A number as a double when the double prints as the same text, else its text as sent. */
function parseNumberExactly(text: string): number | LosslessNumber {
  const value = Number(text);
  return String(value) === text ? value : new LosslessNumber(text);
}

/**
 * Parse `text` with secure-json-parse's rules: throws SyntaxError, or on a prototype-polluting key.
 * Text with no backslash (so no \u-escaped key), no `__proto__`, no `constructor` and no BOM cannot
 * hold such a key: JSON.parse alone gives secure-json-parse's answer, without its two regex scans
 * (three indexOf scans are cheaper; this runs for every event). Anything else goes to it.
 */
export function parseJsonSecurely(text: string): unknown {
  if (text.charCodeAt(0) !== 0xfeff && !text.includes('\\') && !text.includes('__proto__') && !text.includes('constructor')) return JSON.parse(text);
  return secureJson.parse(text, undefined, SECURE_PARSE_OPTIONS);
}

/**
 * Re-parse JSON text already parsed (and checked for syntax and prototype keys) into `parsed`,
 * keeping numbers a double would change as LosslessNumber. A value nested deeper than any valid
 * event is returned as it was parsed: the schema refuses it anyway, and lossless-json recurses.
 */
export function keepExactNumbers(text: string, parsed: unknown): unknown {
  if (!mayLoseDigits(text) || nestsDeeperThan(text, EXACT_PARSE_MAX_NESTING)) return parsed;
  // Duplicate keys: the last one wins, as in JSON.parse and in jsonb.
  return parseLossless(text, undefined, { parseNumber: parseNumberExactly, onDuplicateKey: ({ newValue }) => newValue });
}

/** Parse JSON securely, keeping every number's digits (see the module comment). */
export function parseExactJson(text: string): unknown {
  return keepExactNumbers(text, parseJsonSecurely(text));
}

export function isExactNumber(value: unknown): value is LosslessNumber {
  return isLosslessNumber(value);
}

/** JSON text of a value from parseExactJson, numbers as sent. Use JSON.stringify when none is exact. */
export function stringifyExactJson(value: unknown): string {
  return stringifyLossless(value) ?? 'null';
}
