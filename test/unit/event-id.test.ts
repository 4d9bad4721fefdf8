import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validate, version } from 'uuid';
import { newEventId } from '../../src/event/event-id.ts';

describe('newEventId', () => {
  it('gives distinct, valid, time-ordered UUIDv7s across pool refills', () => {
    const ids = Array.from({ length: 1000 }, () => newEventId());
    assert.equal(new Set(ids).size, 1000);
    assert.ok(ids.every((id) => validate(id) && version(id) === 7));
    const millis = ids.map((id) => id.replace(/-/g, '').slice(0, 12));
    assert.deepEqual([...millis].sort(), millis, 'the millisecond timestamps never go back');
  });
});
