import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { IngestError } from '../../src/errors.ts';
import { Admission, type QueueView } from '../../src/http/admission.ts';
import { RoomWaiters } from '../../src/ingest/room-waiters.ts';

function queue(overrides: Partial<QueueView> = {}): QueueView & { queuedDepth: number; draining: boolean } {
  return {
    queuedDepth: 0,
    capacity: 100,
    drainRatePerSecond: 10,
    draining: false,
    hasRoomFor(count: number) {
      return this.queuedDepth + count <= this.capacity;
    },
    ...overrides,
  };
}


/** Call now, synchronously (an async function runs to its first await): a throw becomes a rejection. */
async function run(call: () => Promise<void> | undefined): Promise<void> {
  await call();
}

describe('Admission', () => {
  it('sheds above the high-water mark and admits again only below the low-water mark', () => {
    const view = queue();
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6 });
    const decisions: string[] = [];
    for (const queuedDepth of [79, 80, 70, 61, 60, 59, 70, 79]) {
      view.queuedDepth = queuedDepth;
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
    const view = queue({ queuedDepth: 100 });
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6 });
    const full = admission.decide();
    assert.equal(full.admit, false);
    assert.equal(!full.admit && full.code, 'INGEST_ERR_QUEUE_FULL');
    view.draining = true;
    const draining = admission.decide();
    assert.equal(!draining.admit && draining.code, 'INGEST_ERR_DRAINING');
  });

  it('derives Retry-After from the drain rate: the time to get back under the low-water mark', () => {
    const view = queue({ queuedDepth: 90, drainRatePerSecond: 10 });
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6 });
    assert.equal(admission.retryAfterSeconds(), 3); // 30 events above 60, at 10/s
    const fast = new Admission(queue({ queuedDepth: 90, drainRatePerSecond: 1000 }), { highWater: 0.8, lowWater: 0.6 });
    assert.equal(fast.retryAfterSeconds(), 1);
    const stalled = new Admission(queue({ queuedDepth: 90, drainRatePerSecond: 0 }), { highWater: 0.8, lowWater: 0.6 });
    assert.equal(stalled.retryAfterSeconds(), 60);
  });
});

/** A queue for policy standing: queuedDepth and reservations the test moves by hand, real RoomWaiters. */
function room(capacity = 100) {
  const state = {
    queuedDepth: 0,
    reservedEvents: 0,
    capacity,
    drainRatePerSecond: 10,
    draining: false,
    waiters: new RoomWaiters({ maxRequests: 3, maxEvents: 1000 }),
    hasRoomFor(count: number) {
      return this.queuedDepth + count <= this.capacity;
    },
    hasUnreservedRoomFor(count: number) {
      return this.queuedDepth + this.reservedEvents + count <= this.capacity;
    },
    couldEverHold(count: number) {
      return count <= this.capacity;
    },
    reserve(count: number) {
      this.reservedEvents += count;
    },
    /** A batch settled: its events leave the queue (reservations turned into queuedDepth first). */
    settle(count: number) {
      this.queuedDepth -= count;
      this.waiters.wake();
    },
  };
  return state;
}

const codeOf = async (promise: Promise<void>) => promise.then(() => 'admitted', (error: IngestError) => error.code);

describe('Admission, policy standing', () => {
  it('a burst above the high-water mark is not refused: requests wait in FIFO order and go as batches settle', async () => {
    const view = room();
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6, policy: 'standing', waitMs: 60_000 });
    view.queuedDepth = 70;
    assert.equal(admission.decide().admit, true, 'one queuedDepth reading above nothing: admitted');
    const order: string[] = [];
    const big = run(() => admission.admitWhenRoom(view, 40, 0)).then(() => order.push('big'));
    const small = run(() => admission.admitWhenRoom(view, 5, 0)).then(() => order.push('small'));
    await Promise.resolve();
    assert.equal(view.waiters.size, 2);
    view.settle(10); // 60: room for the small one, not the big one ahead of it
    await Promise.resolve();
    assert.deepEqual(order, [], 'the head blocks: a stream of small requests cannot starve a bulk');
    view.settle(30); // 30: 30 + 40 + 5 <= 80
    await Promise.all([big, small]);
    assert.deepEqual(order, ['big', 'small']);
    assert.equal(view.reservedEvents, 45, 'the room was reserved as each was let go');
    assert.equal(admission.shedding, false);
  });

  it('a queue standing above the high-water mark for a whole wait turns shedding on (every waiter refused); it stays on until below the low-water mark', async () => {
    const view = room();
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6, policy: 'standing', waitMs: 20 });
    view.queuedDepth = 80;
    const results = await Promise.all([codeOf(run(() => admission.admitWhenRoom(view, 1, 0))), codeOf(run(() => admission.admitWhenRoom(view, 1, 0)))]);
    assert.deepEqual(results, ['INGEST_ERR_OVERLOADED', 'INGEST_ERR_OVERLOADED']);
    assert.equal(admission.shedding, true);
    const decisions: string[] = [];
    for (const queuedDepth of [79, 61, 60, 59, 79]) {
      view.queuedDepth = queuedDepth;
      const decision = admission.decide();
      decisions.push(decision.admit ? 'admit' : decision.code);
    }
    assert.deepEqual(decisions, ['INGEST_ERR_OVERLOADED', 'INGEST_ERR_OVERLOADED', 'INGEST_ERR_OVERLOADED', 'admit', 'admit']);
  });

  it('a wait that runs out below the high-water mark (a bulk too big for the room left) refuses that request only', async () => {
    const view = room();
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6, policy: 'standing', waitMs: 20 });
    view.queuedDepth = 50;
    assert.equal(await codeOf(run(() => admission.admitWhenRoom(view, 40, 0))), 'INGEST_ERR_OVERLOADED');
    assert.equal(admission.shedding, false);
    assert.equal(await codeOf(run(() => admission.admitWhenRoom(view, 1, 0))), 'admitted');
  });

  it('refuses at once what could never fit, and past the bound on waiting requests; a drain or a client gone ends the wait', async () => {
    const view = room();
    const admission = new Admission(view, { highWater: 0.8, lowWater: 0.6, policy: 'standing', waitMs: 60_000 });
    assert.equal(await codeOf(run(() => admission.admitWhenRoom(view, 101, 0))), 'INGEST_ERR_QUEUE_FULL');
    view.queuedDepth = 80;
    const gone = new AbortController();
    const waiting = [codeOf(run(() => admission.admitWhenRoom(view, 1, 0, gone.signal))), codeOf(run(() => admission.admitWhenRoom(view, 1, 0))), codeOf(run(() => admission.admitWhenRoom(view, 1, 0)))];
    assert.equal(await codeOf(run(() => admission.admitWhenRoom(view, 1, 0))), 'INGEST_ERR_OVERLOADED', 'a fourth waiter is past maxRequests: refused at once');
    gone.abort();
    assert.equal(await waiting[0], 'INGEST_ERR_OVERLOADED');
    view.waiters.close();
    assert.deepEqual(await Promise.all(waiting.slice(1)), ['INGEST_ERR_DRAINING', 'INGEST_ERR_DRAINING']);
    assert.equal(view.reservedEvents, 0, 'nothing reserved for a refused request');
  });
});
