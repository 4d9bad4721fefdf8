import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Coalescer, type CoalescedEntry, type CoalesceReason, type CoalescerOptions } from '../src/coalescer.ts';
import { createFakeClock, type FakeClock } from './fake-clock.ts';

interface RecordedFlush {
  readonly entries: readonly CoalescedEntry<string, number>[];
  readonly reason: CoalesceReason;
}

/** A fake sink: flushes resolve at once, or only when the test says so (`hold`). */
class FakeSink {
  readonly flushes: RecordedFlush[] = [];
  readonly #pending: (() => void)[] = [];
  hold = false;

  readonly flush = (entries: readonly CoalescedEntry<string, number>[], context: { reason: CoalesceReason }) => {
    this.flushes.push({ entries, reason: context.reason });
    if (!this.hold) return Promise.resolve();
    return new Promise<void>((resolve) => this.#pending.push(resolve));
  };

  resolveNext(): void {
    const next = this.#pending.shift();
    assert.ok(next, 'no flush in flight');
    next();
  }

  total(): number {
    return this.flushes.reduce((sum, flush) => sum + flush.entries.reduce((s, [, v]) => s + v, 0), 0);
  }
}

function counter(clock: FakeClock, sink: FakeSink, overrides: Partial<CoalescerOptions<string, number>> = {}) {
  return new Coalescer<string, number>({
    maxKeys: 1000,
    maxWaitMs: 100,
    maxPendingFlushes: 2,
    clock,
    identityOf: (key) => key,
    merge: (older, newer) => older + newer,
    flush: sink.flush,
    ...overrides,
  });
}

describe('Coalescer', () => {
  it('turns 1M increments over 100 keys into 100 rows per flush, every increment counted once', async () => {
    const clock = createFakeClock();
    const sink = new FakeSink();
    const coalescer = counter(clock, sink);
    // 1,000 increments per fake millisecond: a 100 ms window holds 100,000 of them.
    for (let i = 0; i < 1_000_000; i += 1) {
      assert.deepEqual(coalescer.add(`key-${i % 100}`, 1), { ok: true });
      if (i % 1000 === 999) await clock.tickAsync(1);
    }
    await coalescer.close();
    assert.equal(sink.total(), 1_000_000);
    assert.equal(sink.flushes.length, 10);
    for (const flush of sink.flushes) {
      assert.equal(flush.entries.length, 100, 'one row per key per flush');
      assert.ok(flush.entries.every(([, count]) => count === 1000), 'each key merged its 1,000 increments of the window');
    }
    assert.ok(sink.flushes.every((f) => f.reason === 'time'), 'the wait on the fake clock sealed each map (the last at the last tick)');
  });

  it('seals the open map when it holds maxKeys distinct keys; values of known keys only merge', async () => {
    const clock = createFakeClock();
    const sink = new FakeSink();
    const coalescer = counter(clock, sink, { maxKeys: 3 });
    for (const key of ['a', 'b', 'a', 'a', 'b']) coalescer.add(key, 1);
    assert.equal(sink.flushes.length, 0);
    coalescer.add('c', 5);
    assert.equal(sink.flushes.length, 1);
    assert.deepEqual(sink.flushes[0], { entries: [['a', 3], ['b', 2], ['c', 5]], reason: 'keys' });
    assert.equal(coalescer.openKeys, 0);
    await coalescer.close();
  });

  it('is bounded: with every pending place taken, a new key is refused and a known one still merges', async () => {
    const clock = createFakeClock();
    const sink = new FakeSink();
    sink.hold = true;
    const coalescer = counter(clock, sink, { maxKeys: 2, maxPendingFlushes: 1 });
    coalescer.add('a', 1);
    coalescer.add('b', 1); // sealed, in the (held) flush
    coalescer.add('c', 1);
    coalescer.add('d', 1); // full open map, no place to seal it
    assert.equal(coalescer.pendingFlushes, 1);
    assert.deepEqual(coalescer.add('e', 1), { ok: false, reason: 'full' });
    assert.deepEqual(coalescer.add('c', 4), { ok: true });
    assert.equal(coalescer.openKeys, 2);
    sink.resolveNext(); // the place frees: the full open map goes at once
    await clock.flushMicrotasks();
    assert.equal(sink.flushes.length, 2);
    assert.deepEqual(sink.flushes[1], { entries: [['c', 5], ['d', 1]], reason: 'keys' });
    assert.deepEqual(coalescer.add('e', 1), { ok: true });
    sink.resolveNext();
    const closed = coalescer.close();
    await clock.flushMicrotasks();
    sink.resolveNext();
    await closed;
    assert.equal(sink.total(), 9);
  });

  it('seals a map whose wait passed while no place was free as soon as one is', async () => {
    const clock = createFakeClock();
    const sink = new FakeSink();
    sink.hold = true;
    const coalescer = counter(clock, sink, { maxKeys: 2, maxPendingFlushes: 1 });
    coalescer.add('a', 1);
    coalescer.add('b', 1); // sealed by keys, held
    coalescer.add('c', 1);
    await clock.tickAsync(100);
    assert.equal(sink.flushes.length, 1, 'due, but the only place is taken');
    coalescer.add('c', 1);
    sink.resolveNext();
    await clock.flushMicrotasks();
    assert.deepEqual(sink.flushes[1], { entries: [['c', 2]], reason: 'time' });
    sink.resolveNext();
    await coalescer.close();
  });

  it('flushes what it holds on close, then refuses values; close is idempotent', async () => {
    const clock = createFakeClock();
    const sink = new FakeSink();
    const coalescer = counter(clock, sink, { maxWaitMs: Infinity });
    coalescer.add('a', 2);
    coalescer.add('a', 3);
    await clock.tickAsync(1_000_000);
    assert.equal(sink.flushes.length, 0, 'no wait trigger with maxWaitMs Infinity');
    const first = coalescer.close();
    assert.equal(coalescer.close(), first);
    await first;
    assert.deepEqual(sink.flushes, [{ entries: [['a', 5]], reason: 'close' }]);
    assert.deepEqual(coalescer.add('b', 1), { ok: false, reason: 'closed' });
  });

  it('reports a failed flush and goes on with the next map', async () => {
    const clock = createFakeClock();
    const reports: { keys: number; failed: boolean }[] = [];
    let calls = 0;
    const coalescer = counter(clock, new FakeSink(), {
      maxKeys: 1,
      flush: () => (++calls === 1 ? Promise.reject(new Error('sink down')) : Promise.resolve()),
      onFlushSettled: (report) => reports.push({ keys: report.keys, failed: report.error !== undefined }),
    });
    coalescer.add('a', 1);
    await clock.flushMicrotasks();
    coalescer.add('b', 1);
    await coalescer.close();
    assert.deepEqual(reports, [
      { keys: 1, failed: true },
      { keys: 1, failed: false },
    ]);
  });
});
