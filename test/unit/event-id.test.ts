import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse, validate, version } from 'uuid';
import { newEventId } from '../../src/event/event-id.ts';

describe('newEventId', () => {
  it('gives distinct, valid, time-ordered UUIDv7s across pool refills', () => {
    const ids = Array.from({ length: 1000 }, () => newEventId());
    assert.equal(new Set(ids).size, 1000);
    assert.ok(ids.every((id) => validate(id) && version(id) === 7));
    const millis = ids.map((id) => id.replace(/-/g, '').slice(0, 12));
    assert.deepEqual([...millis].sort(), millis, 'the millisecond timestamps never go back');
  });

  it('puts the millisecond timestamp in the first 48 bits and the RFC 9562 variant in byte 8', () => {
    for (const nowMs of [0, 1, 0xffff_ffff, 0x1_0000_0000, Date.UTC(2026, 11, 1, 23, 0, 0, 123), 2 ** 48 - 1]) {
      const bytes = parse(newEventId(nowMs));
      const millis = bytes.slice(0, 6).reduce((value, byte) => value * 256 + byte, 0);
      assert.equal(millis, nowMs);
      assert.equal(bytes[6]! >> 4, 7, 'version 7');
      assert.equal(bytes[8]! >> 6, 0b10, 'variant 10');
    }
  });
});
