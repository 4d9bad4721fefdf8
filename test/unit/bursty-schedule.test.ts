import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_BURSTY, baseRateAt, makeBurstySchedule, offeredPerSecond } from '../../bench/generators/bursty-schedule.ts';

const options = { ...DEFAULT_BURSTY, durationSeconds: 20 };

describe('bench bursty schedule', () => {
  it('is the same for the same seed (replayable) and differs for another', () => {
    assert.deepEqual(makeBurstySchedule(options), makeBurstySchedule(options));
    assert.notDeepEqual(makeBurstySchedule(options).arrivals, makeBurstySchedule({ ...options, seed: options.seed + 1 }).arrivals);
  });

  it('sends each burst whole, within its spread (< 100 ms), as bulk requests', () => {
    const schedule = makeBurstySchedule(options);
    assert.ok(schedule.burstStartsMs.length > 0, 'at least one burst in 20 s');
    schedule.burstStartsMs.forEach((startMs, burst) => {
      const requests = schedule.arrivals.filter((a) => a.burst === burst);
      assert.equal(
        requests.reduce((sum, a) => sum + a.events, 0),
        options.burstEvents,
      );
      const span = Math.max(...requests.map((a) => a.atMs)) - startMs;
      assert.ok(span < options.burstSpreadMs && span < 100, `burst ${burst} spans ${span} ms`);
      assert.ok(requests.every((a) => a.events > 1 && a.events <= options.burstRequestEvents));
    });
  });

  it('follows the diurnal base: trough at the ends, peak in the middle, arrivals in time order', () => {
    assert.equal(baseRateAt(options, 0), options.troughPerSecond);
    assert.equal(baseRateAt(options, options.durationSeconds / 2), options.peakPerSecond);
    const schedule = makeBurstySchedule({ ...options, burstsPerSecondAtPeak: 0 });
    const perSecond = offeredPerSecond(schedule);
    const middle = perSecond[10]!;
    assert.ok(perSecond[0]! < middle / 5 && perSecond[19]! < middle / 5, `ends ${perSecond[0]}, ${perSecond[19]} vs middle ${middle}`);
    // Poisson around the mean: within 25 % of the integral of the rate over the middle second.
    assert.ok(Math.abs(middle - options.peakPerSecond) < options.peakPerSecond * 0.25, `middle second ${middle}`);
    const times = schedule.arrivals.map((a) => a.atMs);
    assert.deepEqual([...times].sort((a, b) => a - b), times);
  });
});
