/**
 * The seam for the time the service's own rules depend on, so tests can swap in a fake one
 * (@sinonjs/fake-timers' `createClock()` satisfies this interface) and advance it:
 *  - the batcher: the linger timer (BATCH_MAX_WAIT_MS), enqueue times, the drain rate, the
 *    shutdown deadline;
 *  - the edge: received_at, the API-key cache and failed-login window, tenant activity for fair
 *    shares;
 *  - dead-letter records' timestamps.
 * Deliberately NOT on it: timeouts that bound real I/O and are tested against real I/O — the COPY
 * timeout (AbortSignal.timeout), the readiness probe, the pool's connect timeout, retry backoff (cockatiel's timers),
 * the breaker's open period and probe schedule (real unref'd timers), the WAL's fsync timing and its disk-full
 * retry (performance.now), and the spill/replay wait for room. A fake clock cannot make a socket or
 * a disk faster, so these tests use short real timeouts instead.
 */
/** The Clock interface and the real clock are the batcher package's, so both share one seam. */
export { systemClock, type Clock, type TimerHandle } from '@audit-ingest/batcher';

let lastIsoMs = Number.NaN;
let lastIso = '';

/**
 * `new Date(ms).toISOString()`, remembered for the last millisecond asked: under load many events
 * are received within one millisecond, and each would otherwise build a Date and a string.
 */
export function isoAt(ms: number): string {
  if (ms !== lastIsoMs) {
    lastIso = new Date(ms).toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}
