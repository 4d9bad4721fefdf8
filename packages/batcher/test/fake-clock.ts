import FakeTimers from '@sinonjs/fake-timers';
import type { Clock } from '../src/clock.ts';

export interface FakeClock extends Clock {
  /** Advance time, running due timers and the promise jobs they schedule. */
  tickAsync(ms: number): Promise<void>;
  /** Run pending promise jobs without moving time. */
  flushMicrotasks(): Promise<void>;
}

/** @sinonjs/fake-timers behind the batcher's Clock interface. */
export function createFakeClock(startMs = Date.UTC(2026, 10, 22)): FakeClock {
  const fake = FakeTimers.createClock(startMs);
  return {
    now: () => fake.now,
    setTimeout: (callback, delayMs) => fake.setTimeout(callback, delayMs),
    clearTimeout: (handle) => fake.clearTimeout(handle as FakeTimers.TimerId),
    tickAsync: async (ms) => {
      await fake.tickAsync(ms);
    },
    flushMicrotasks: async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
}
