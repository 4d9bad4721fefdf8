import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdaptiveWindow, adaptiveBounds, type AdaptiveWindowOptions, type BatchObservation, type WindowDecision } from '@audit-ingest/batcher';
import { isCongestionSignal } from '../../src/db/congestion-signal.ts';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.ts';

const SLO_MS = 250;

function controller(clock: FakeClock, overrides: Partial<AdaptiveWindowOptions> = {}) {
  return new AdaptiveWindow({
    initial: { maxBatchSize: 500, maxWaitMs: 200 },
    min: { maxBatchSize: 62, maxWaitMs: 25 },
    max: { maxBatchSize: 1000, maxWaitMs: 250 },
    latencySloMs: SLO_MS,
    now: () => clock.now(),
    ...overrides,
  });
}

type Kind = 'filled' | 'timed' | 'other';

/**
 * Feed one batch every `everyMs` (fake time), each opened `latencyMs` before it settles, and
 * record every decision taken.
 */
async function feed(clock: FakeClock, window: AdaptiveWindow, latenciesMs: readonly number[], kind: Kind, everyMs = 40): Promise<WindowDecision[]> {
  const decisions: WindowDecision[] = [];
  for (const latencyMs of latenciesMs) {
    await clock.tickAsync(everyMs);
    const batch: BatchObservation = { openedAtMs: clock.now() - latencyMs, latencyMs, filled: kind === 'filled', timed: kind === 'timed' };
    const change = window.observeBatch(batch);
    if (change) decisions.push(change.decision);
  }
  return decisions;
}

const repeat = (value: number, count: number) => Array.from({ length: count }, () => value);

describe('AdaptiveWindow', () => {
  it('starts from the configured window', () => {
    const clock = createFakeClock();
    assert.deepEqual(controller(clock).window, { maxBatchSize: 500, maxWaitMs: 200 });
  });

  it('grows the size additively while filled batches stay well under the SLO, up to its maximum', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    const decisions = await feed(clock, window, repeat(80, 400), 'filled');
    assert.equal(decisions[0], 'increase_size');
    assert.equal(window.window.maxBatchSize, 1000, 'the size stops at its bound');
    assert.equal(window.window.maxWaitMs, 200, 'filled batches never move the wait');
    const sizes = decisions.filter((decision) => decision === 'increase_size').length;
    assert.equal(sizes, 10, 'by steps of a tenth of the initial size: 500 → 1000 in 10 decisions');
  });

  it('does not grow when batches do not fill, and lengthens the wait only for batches that left on their timer', async () => {
    const clock = createFakeClock();
    const natural = controller(clock);
    assert.ok((await feed(clock, natural, repeat(20, 50), 'other')).every((decision) => decision === 'hold'));
    assert.deepEqual(natural.window, { maxBatchSize: 500, maxWaitMs: 200 });

    const timed = controller(clock);
    await feed(clock, timed, repeat(150, 60), 'timed', 200);
    assert.equal(timed.window.maxBatchSize, 500);
    assert.equal(timed.window.maxWaitMs, 250, 'the wait grows to its bound while batches leave on time well under the SLO');
  });

  it('holds inside the headroom band below the SLO', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    const decisions = await feed(clock, window, repeat(235, 30), 'filled'); // above the target 250 × 0.9, below 250
    assert.ok(decisions.length > 0);
    assert.ok(decisions.every((decision) => decision === 'hold'), decisions.join(','));
  });

  it('halves size and wait on a breach that lasts two decisions, once: batches formed under the old window are not evidence', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    const decisions = await feed(clock, window, repeat(400, 14), 'filled');
    assert.deepEqual(decisions, ['hold', 'decrease_latency'], 'the first breach holds, the second (one interval later) halves');
    assert.deepEqual(window.window, { maxBatchSize: 250, maxWaitMs: 100 });
    // Batches still in flight when it halved (opened before the change) settle slow as well.
    for (let i = 0; i < 20; i += 1) {
      await clock.tickAsync(40);
      assert.equal(window.observeBatch({ openedAtMs: clock.now() - 2000, latencyMs: 2000, filled: true, timed: false }), undefined);
    }
    assert.deepEqual(window.window, { maxBatchSize: 250, maxWaitMs: 100 }, 'not halved again on stale evidence');
  });

  it('a breach just past the SLO takes back the overshoot from the linger, not half of it', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    // A database 70 ms slower: batches that left on their 200 ms timer settle at 270 ms.
    const decisions = await feed(clock, window, repeat(270, 8), 'timed', 200);
    assert.deepEqual(decisions, ['hold', 'decrease_latency']);
    // 270 − 225 (the target) = 45 ms of 200: × 0.775.
    assert.deepEqual(window.window, { maxBatchSize: 387, maxWaitMs: 155 });
  });

  it('the wait climbs to where the p99 estimate meets the target and stops there', async () => {
    const clock = createFakeClock();
    const window = controller(clock, { initial: { maxBatchSize: 500, maxWaitMs: 100 } });
    const waits: number[] = [];
    // Timed batches whose write takes 30 ms: latency = wait + 30, so the target (225) is a 195 ms wait.
    for (let i = 0; i < 120; i += 1) {
      const waitMs = window.window.maxWaitMs;
      await clock.tickAsync(waitMs);
      window.observeBatch({ openedAtMs: clock.now() - waitMs - 30, latencyMs: waitMs + 30, filled: false, timed: true, flushMs: 30 });
      waits.push(window.window.maxWaitMs);
    }
    assert.equal(Math.max(...waits), 195, 'never past the target');
    assert.deepEqual(waits.slice(-20), repeat(195, 20), 'and holds there');
  });

  it('a breach while batches queue for a flush slot grows the window instead of shrinking it', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    // 400 ms: 200 ms of linger, 50 ms of write, 150 ms waiting for a slot (more than a quarter of it).
    const decisions: WindowDecision[] = [];
    for (let i = 0; i < 30; i += 1) {
      const waitMs = window.window.maxWaitMs;
      await clock.tickAsync(100);
      const change = window.observeBatch({ openedAtMs: clock.now() - 400, latencyMs: 400, filled: false, timed: true, flushMs: 400 - waitMs - 150 });
      if (change) decisions.push(change.decision);
    }
    assert.ok(!decisions.some((decision) => decision.startsWith('decrease')), decisions.join(','));
    assert.equal(window.window.maxWaitMs, 250, 'the wait grows to its bound: more events per write');

    // Filled batches queueing (a load step onto a small window): the size doubles per decision.
    const small = controller(clock, { initial: { maxBatchSize: 100, maxWaitMs: 100 } });
    const sizes: number[] = [];
    for (let i = 0; i < 30; i += 1) {
      await clock.tickAsync(100);
      const change = small.observeBatch({ openedAtMs: clock.now() - 600, latencyMs: 600, filled: true, timed: false, flushMs: 100 });
      if (change && change.decision !== 'hold') sizes.push(change.window.maxBatchSize);
    }
    assert.deepEqual(sizes.slice(0, 4), [200, 400, 800, 1000], 'doubling, to its bound: the queue grows while it climbs');
    // The same latency without the queue (all of it the write) is a breach to cut.
    const plain = controller(clock);
    const cuts = await feed(clock, plain, repeat(400, 8), 'timed', 200);
    assert.ok(cuts.includes('decrease_latency'), cuts.join(','));
  });

  it('follows the database: fast → 80 ms slower → fast again, inside the SLO once settled in each', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    const phase = async (writeMs: number, batches: number) => {
      const seen: { waitMs: number; latencyMs: number }[] = [];
      for (let i = 0; i < batches; i += 1) {
        const waitMs = window.window.maxWaitMs;
        await clock.tickAsync(waitMs);
        // A little jitter in the write, so the deviation band is not zero.
        const flushMs = writeMs + (i % 3) * 2;
        window.observeBatch({ openedAtMs: clock.now() - waitMs - flushMs, latencyMs: waitMs + flushMs, filled: false, timed: true, flushMs });
        seen.push({ waitMs: window.window.maxWaitMs, latencyMs: waitMs + flushMs });
      }
      return seen.slice(-20);
    };
    const fast = await phase(20, 80);
    const slow = await phase(100, 80);
    const fastAgain = await phase(20, 120);
    for (const [name, settled] of [
      ['fast', fast],
      ['slow', slow],
      ['fast again', fastAgain],
    ] as const) {
      assert.ok(
        settled.every(({ latencyMs }) => latencyMs <= SLO_MS),
        `${name}: every settled batch within the SLO (${settled.map(({ latencyMs }) => latencyMs).join(',')})`,
      );
    }
    const lastWait = (settled: readonly { waitMs: number }[]) => settled.at(-1)!.waitMs;
    assert.ok(lastWait(fast) >= 190, `fast: the wait uses the budget (${lastWait(fast)} ms)`);
    assert.ok(lastWait(slow) >= 90 && lastWait(slow) <= 125, `slow: the wait gave up about the 80 ms (${lastWait(slow)} ms)`);
    assert.ok(lastWait(fastAgain) >= 190, `fast again: the wait came back to the budget (${lastWait(fastAgain)} ms)`);
  });

  it('keeps halving while a breach persists, but never below its minimum', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    await feed(clock, window, repeat(900, 200), 'filled');
    assert.deepEqual(window.window, { maxBatchSize: 62, maxWaitMs: 25 });
  });

  it('smooths: one slow batch among fast ones moves the estimate by the EWMA weight, not to the spike', async () => {
    const clock = createFakeClock();
    const window = controller(clock, { deviationScale: 0 });
    await feed(clock, window, [100, 100, 100], 'other');
    await feed(clock, window, [600], 'other');
    assert.equal(Math.round(window.latencyEstimateMs!), 300, 'mean 100 + 0.4 × (600 − 100)');
  });

  it('a burst of congestion signals in one interval halves the window once, not once per signal', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    await feed(clock, window, repeat(80, 3), 'other'); // an estimate of ~80 ms: the interval
    const decisions: WindowDecision[] = [];
    // Ten failed attempts of one outage, 10 ms apart, straddling a decision boundary.
    for (let i = 0; i < 10; i += 1) {
      await clock.tickAsync(10);
      const change = window.noteCongestion();
      if (change) decisions.push(change.decision);
    }
    decisions.push(...(await feed(clock, window, repeat(80, 3), 'other', 60)));
    assert.deepEqual(decisions.filter((decision) => decision.startsWith('decrease')), ['decrease_congestion']);
    assert.deepEqual(window.window, { maxBatchSize: 250, maxWaitMs: 100 });
  });

  it('under intermittent back pressure (a 429/503-like signal every 5th interval) settles into a bounded sawtooth instead of collapsing', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    const sizes: number[] = [];
    const decisions: WindowDecision[] = [];
    for (let interval = 1; interval <= 100; interval += 1) {
      decisions.push(...(await feed(clock, window, repeat(80, 3), 'filled', 30)));
      if (interval % 5 === 0) {
        for (let i = 0; i < 5; i += 1) {
          const change = window.noteCongestion();
          if (change) decisions.push(change.decision);
        }
      }
      sizes.push(window.window.maxBatchSize);
    }
    const decreases = decisions.filter((decision) => decision === 'decrease_congestion').length;
    assert.equal(decreases, 20, 'one decrease per congested interval, however many signals it held');
    const late = sizes.slice(50);
    assert.ok(Math.min(...late) > 62, `stays above its floor (late sizes ${Math.min(...late)}–${Math.max(...late)})`);
    assert.ok(Math.max(...late) - Math.min(...late) < 500, 'the swing is bounded');
  });

  it('needs minSamples batches under the current window before a latency decision', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    assert.deepEqual(await feed(clock, window, [900, 900], 'filled'), []);
    assert.deepEqual(await feed(clock, window, [900], 'filled'), ['hold'], 'the third sample allows a decision (a first breach: hold)');
  });

  it('one slow interval among fast ones does not move the window; it grows again after it', async () => {
    const clock = createFakeClock();
    const window = controller(clock);
    // Batches that do not fill leave the window alone, so every sample below counts as evidence.
    const decisions = [
      ...(await feed(clock, window, repeat(80, 6), 'other')),
      ...(await feed(clock, window, repeat(700, 3), 'other')), // a stall: the estimate passes the SLO once
      ...(await feed(clock, window, repeat(80, 60), 'filled')),
    ];
    assert.ok(!decisions.includes('decrease_latency'), decisions.join(','));
    assert.ok(decisions.includes('hold'));
    assert.ok(window.window.maxBatchSize > 500, `grew on (${window.window.maxBatchSize})`);
  });
});

describe('adaptiveBounds', () => {
  it('an eighth of the configured window down, 4 × the size (at most half the queue) and the SLO as wait up', () => {
    assert.deepEqual(adaptiveBounds({ maxBatchSize: 500, maxWaitMs: 200 }, 2048, 250), {
      min: { maxBatchSize: 62, maxWaitMs: 25 },
      max: { maxBatchSize: 1024, maxWaitMs: 250 },
    });
    assert.deepEqual(adaptiveBounds({ maxBatchSize: 4, maxWaitMs: 0 }, 5, 10), { min: { maxBatchSize: 1, maxWaitMs: 1 }, max: { maxBatchSize: 4, maxWaitMs: 10 } });
  });
});

describe('isCongestionSignal', () => {
  const withCode = (code: string) => Object.assign(new Error(code), { code });
  for (const code of ['53300', '57014', '08006', '08001', '57P01', 'SINK_ERR_COPY_TIMEOUT', 'DB_ERR_CONNECT_TIMEOUT', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT']) {
    it(`${code} is congestion`, () => assert.equal(isCongestionSignal(withCode(code)), true));
  }
  for (const code of ['22P02', '22001', '23505', '23502', '23514', '42P01', '40001', '42501', 'SOMETHING_ELSE']) {
    it(`${code} is not congestion`, () => assert.equal(isCongestionSignal(withCode(code)), false));
  }
  it('a socket closed under pg (no code) is congestion; an unknown error is not', () => {
    assert.equal(isCongestionSignal(new Error('Connection terminated unexpectedly')), true);
    assert.equal(isCongestionSignal(new Error('boom')), false);
    assert.equal(isCongestionSignal(undefined), false);
  });
});
