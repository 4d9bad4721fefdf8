/**
 * The seam for time: the batcher's linger timer, enqueue times, the drain rate and the shutdown
 * deadline all read it, so tests can swap in a fake clock (@sinonjs/fake-timers' `createClock()`
 * satisfies this interface) and advance it.
 */
/** Whatever the clock's setTimeout returns; only ever handed back to its clearTimeout. */
export type TimerHandle = object | number;

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock. Its timers are unref'd: a pending batch timer never keeps the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(callback, delayMs) {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
