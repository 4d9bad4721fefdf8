import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyFailure, isConnectionFailure, recognisedFailure, sqlstateOf } from '../../src/db/failure-class.ts';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('classifyFailure', () => {
  // Expected verdicts of the tables themselves: 'unknown' rows are what the tables do not list (and
  // classifyFailure then treats as transient), so a row equal to the default cannot hide a dead table.
  const table: [string, unknown, 'transient' | 'permanent' | 'unknown'][] = [
    ['connection refused', withCode('ECONNREFUSED'), 'transient'],
    ['connection reset', withCode('ECONNRESET'), 'transient'],
    ['connection exception 08006', withCode('08006'), 'transient'],
    ['admin shutdown 57P01', withCode('57P01'), 'transient'],
    ['crash recovery 57P03', withCode('57P03'), 'transient'],
    ['statement timeout 57014', withCode('57014'), 'transient'],
    ['serialization failure 40001', withCode('40001'), 'transient'],
    ['deadlock 40P01', withCode('40P01'), 'transient'],
    ['too many connections 53300', withCode('53300'), 'transient'],
    ['disk full 53100', withCode('53100'), 'transient'],
    ['pool exhausted (pg connect timeout, no code)', new Error('timeout exceeded when trying to connect'), 'unknown'],
    ['connection terminated (no code)', new Error('Connection terminated unexpectedly'), 'unknown'],
    ['COPY timeout', withCode('SINK_ERR_COPY_TIMEOUT'), 'transient'],
    ['dead-letter write failure', withCode('DLQ_ERR_WRITE'), 'transient'],
    ['invalid text representation 22P02', withCode('22P02'), 'permanent'],
    ['value too long 22001', withCode('22001'), 'permanent'],
    ['untranslatable character 22P05', withCode('22P05'), 'permanent'],
    ['check violation 23514', withCode('23514'), 'permanent'],
    ['not null violation 23502', withCode('23502'), 'permanent'],
    ['datatype mismatch 42804', withCode('42804'), 'permanent'],
    ['undefined table 42P01 (missing migration)', withCode('42P01'), 'transient'],
    ['insufficient privilege 42501', withCode('42501'), 'transient'],
    ['an unknown SQLSTATE class', withCode('XX000'), 'unknown'],
    ['a plain Error', new Error('boom'), 'unknown'],
    ['a non-error value', 'string thrown', 'unknown'],
  ];
  for (const [name, error, expected] of table) {
    it(`${name} → ${expected}`, () => {
      assert.equal(recognisedFailure(error) ?? 'unknown', expected);
      assert.equal(classifyFailure(error), expected === 'unknown' ? 'transient' : expected);
    });
  }
});

describe('sqlstateOf', () => {
  it('reads five-character SQLSTATEs only', () => {
    assert.equal(sqlstateOf(withCode('23514')), '23514');
    assert.equal(sqlstateOf(withCode('ECONNREFUSED')), undefined);
    assert.equal(sqlstateOf(null), undefined);
  });
});

describe('isConnectionFailure: the database or the path to it is not there (the breaker probes)', () => {
  const table: [string, unknown, boolean][] = [
    ['connection refused', withCode('ECONNREFUSED'), true],
    ['connection reset', withCode('ECONNRESET'), true],
    ['pool connect timeout', withCode('DB_ERR_CONNECT_TIMEOUT'), true],
    ['connection exception 08006', withCode('08006'), true],
    ['admin shutdown 57P01', withCode('57P01'), true],
    ['crash shutdown 57P02', withCode('57P02'), true],
    ['starting up 57P03', withCode('57P03'), true],
    ['backend gone (pg, no code)', new Error('Connection terminated unexpectedly'), true],
    ['COPY timeout (a lock looks the same)', withCode('SINK_ERR_COPY_TIMEOUT'), false],
    ['statement timeout 57014', withCode('57014'), false],
    ['disk full 53100', withCode('53100'), false],
    ['undefined table 42P01', withCode('42P01'), false],
    ['check violation 23514', withCode('23514'), false],
    ['a plain Error', new Error('boom'), false],
  ];
  for (const [name, error, expected] of table) {
    it(`${name} → ${expected}`, () => assert.equal(isConnectionFailure(error), expected));
  }
});
