import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mayLoseDigits, nestsDeeperThan, parseExactJson, stringifyExactJson } from '../../src/event/exact-json.ts';

describe('mayLoseDigits', () => {
  const table: readonly (readonly [string, boolean])[] = [
    ['{"n":12345678901234567890}', true],
    ['{"n":1234567890123456}', true],
    ['{"n":123456789012345}', false],
    ['{"n":3.14159265358979323846}', true],
    ['{"n":0.1234567890123456}', true],
    ['{"n":1234567890.12345}', false],
    ['{"n":1e400}', true],
    ['{"n":[1E-400]}', true],
    ['{"n":2.5e+3 }', true],
    ['{"n":1.50,"m":1}', true],
    ['{"n":1.0}', true],
    ['{"n":0.25,"m":-7,"o":10}', false],
    // Strings look alike but end in a quote: a timestamp with .000, a UUID with 3e5, a version.
    ['{"t":"2026-11-22T05:00:00.000Z","id":"0193a4c2-7b1e-7c3a-9f00-5d2e8a1b4c3e5","v":"1.0"}', false],
  ];
  for (const [text, expected] of table) it(`${text} → ${expected}`, () => assert.equal(mayLoseDigits(text), expected));
});

describe('parseExactJson and stringifyExactJson', () => {
  for (const token of ['12345678901234567890', '3.14159265358979323846', '1e400', '1e-400', '1.50', '-0.0', '1E5']) {
    it(`keeps ${token} as sent`, () => {
      const text = `{"a":${token},"b":[${token},1,"x"],"c":{"d":${token}}}`;
      assert.equal(stringifyExactJson(parseExactJson(text)), text);
    });
  }

  it('gives plain doubles where they print as sent, and plain JSON.parse values without such numbers', () => {
    const value = parseExactJson('{"a":1e400,"b":0.25,"c":7}') as { a: unknown; b: unknown; c: unknown };
    assert.equal(value.b, 0.25);
    assert.equal(value.c, 7);
    assert.equal(typeof value.a, 'object');
    assert.deepEqual(parseExactJson('{"a":[1,2.5,"x"]}'), { a: [1, 2.5, 'x'] });
  });

  it('lets the last duplicate key win, as JSON.parse and jsonb do', () => {
    assert.equal(stringifyExactJson(parseExactJson('{"a":1e400,"a":2e400}')), '{"a":2e400}');
  });

  it('refuses prototype keys and bad syntax on the exact path too', () => {
    assert.throws(() => parseExactJson('{"a":1e400,"__proto__":{"x":1}}'), /prototype/);
    assert.throws(() => parseExactJson('{"a":1e400,'), SyntaxError);
  });

  it('does not recurse on deep values (10,000 levels)', () => {
    const deep = `{"a":1e400,"b":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    assert.doesNotThrow(() => parseExactJson(deep));
  });
});

describe('nestsDeeperThan', () => {
  it('counts arrays and objects, not brackets inside strings', () => {
    assert.equal(nestsDeeperThan('[[{"a":[1]}]]', 4), false);
    assert.equal(nestsDeeperThan('[[{"a":[[1]]}]]', 4), true);
    assert.equal(nestsDeeperThan('{"s":"[[[[[[\\"[[[["}', 1), false);
  });
});
