import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Admission, type QueueView } from '../../src/http/admission.ts';

function queue(overrides: Partial<QueueView> = {}): QueueView & { depth: number; draining: boolean } {
  return {
    depth: 0,
    capacity: 100,
    drainRatePerSecond: 10,
    draining: false,
    hasRoomFor(count: number) {
      return this.depth + count <= this.capacity;
    },
    ...overrides,
  };
}

describe('Admission', () => {
  it('sheds above the high-water mark and admits again only below the low-water mark', () => {
    const view = queue();
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6 });
    const decisions: string[] = [];
    for (const depth of [79, 80, 70, 61, 60, 59, 70, 79]) {
      view.depth = depth;
      const decision = admission.decide();
      decisions.push(decision.admit ? 'admit' : decision.code);
    }
    assert.deepEqual(decisions, [
      'admit', // 79 + 1 = 80: not above 80%
      'INGEST_ERR_OVERLOADED', // 81 would be above
      'INGEST_ERR_OVERLOADED', // still above the low-water mark
      'INGEST_ERR_OVERLOADED',
      'INGEST_ERR_OVERLOADED', // 60 is not below 60
      'admit', // 59: below the low-water mark
      'admit', // no flapping back until the high-water mark
      'admit',
    ]);
  });

  it('answers 503 codes when full or draining', () => {
    const view = queue({ depth: 100 });
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6 });
    const full = admission.decide();
    assert.equal(full.admit, false);
    assert.equal(!full.admit && full.code, 'INGEST_ERR_QUEUE_FULL');
    view.draining = true;
    const draining = admission.decide();
    assert.equal(!draining.admit && draining.code, 'INGEST_ERR_DRAINING');
  });

  it('derives Retry-After from the drain rate: the time to get back under the low-water mark', () => {
    const view = queue({ depth: 90, drainRatePerSecond: 10 });
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6 });
    assert.equal(admission.retryAfterSeconds(), 3); // 30 events above 60, at 10/s
    const fast = new Admission(queue({ depth: 90, drainRatePerSecond: 1000 }), { highWater: 0.8, lowWater: 0.6 });
    assert.equal(fast.retryAfterSeconds(), 1);
    const stalled = new Admission(queue({ depth: 90, drainRatePerSecond: 0 }), { highWater: 0.8, lowWater: 0.6 });
    assert.equal(stalled.retryAfterSeconds(), 60);
  });
});
