import { BrokenCircuitError, ExponentialBackoff, decorrelatedJitterGenerator, type IBackoff } from 'cockatiel';
import { isConnectionFailure, isTransientFailure } from '../db/failure-class.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Sink, WriteResult } from './sink.ts';

export type BreakerState = 'closed' | 'open' | 'half_open';
export type ProbeResult = 'success' | 'failure';

export interface BreakerOptions {
  /** Consecutive transient failures that open the breaker. */
  readonly failureThreshold: number;
  /** How long it stays open, when it cannot probe, before one test batch may try. */
  readonly openMs: number;
  /**
   * A cheap check that the database answers (`SELECT 1` on a fresh connection, bounded): resolves
   * when it does. Without it the breaker only waits out `openMs`.
   */
  readonly probe?: () => Promise<void>;
  /** The probes' schedule: exponential with decorrelated jitter from `initialDelayMs`, capped at `maxDelayMs`. */
  readonly probeBackoff?: { readonly initialDelayMs: number; readonly maxDelayMs: number };
  readonly onStateChange?: (state: BreakerState) => void;
  readonly onProbe?: (result: ProbeResult, error?: unknown) => void;
}

/** Default probe schedule: the first ~250 ms after opening, then growing, never more than 2 s apart. */
export const DEFAULT_PROBE_BACKOFF = { initialDelayMs: 250, maxDelayMs: 2000 } as const;

type Recovery = 'probe' | 'window';

/**
 * A circuit breaker in front of a sink, as a mode machine:
 *
 *   closed ── `failureThreshold` transient failures in a row ──► open
 *   open (recovery 'probe': some failure of that run was a connection failure, and a probe is given)
 *        ── a probe answers ──► half_open      (probes run on a backoff while they fail;
 *                                               straight to closed when no batch waits to test)
 *   open (recovery 'window': the database answered but refused the writes — a lock wait, a full disk)
 *        ── `openMs` passes ──► half_open
 *   half_open ── the test batch succeeds (or is refused for its data) ──► closed
 *   half_open ── the test batch fails for a transient reason ──► open (the same recovery rules)
 *   any state ── a write succeeds ──► closed  (a write from before the opening that got through)
 *
 * Only transient failures count: a batch the database refused for its content says nothing about
 * its health. Nothing reaches the database while open: in 'probe' recovery a write waits (until
 * the breaker leaves open, or its signal aborts — the drain deadline), so the backlog goes the
 * moment a probe answers instead of a retry backoff later; in 'window' recovery it fails at once
 * with cockatiel's BrokenCircuitError (transient: the retrying sink backs off), as a probe could not
 * tell that a locked table is free again. In half_open one batch is sent; the others wait for its
 * verdict. A probe is `SELECT 1`, never a batch, so a database that is still down is asked one
 * small question per backoff step (250 ms growing to 2 s apart by default), not sent the backlog.
 *
 * Why not cockatiel's circuitBreaker (this class used it before): its open period runs on
 * Date.now() and ends only when a call arrives, and nothing but `isolate()` can change its state
 * from outside, so a probe that finds the database back could not close it. Its backoff is used.
 */
export class BreakerSink implements Sink {
  readonly #inner: Sink;
  readonly #options: BreakerOptions;
  readonly #probeBackoff: ExponentialBackoff<[number, number]>;
  #state: BreakerState = 'closed';
  #recovery: Recovery = 'window';
  #consecutiveFailures = 0;
  /** A connection failure among the consecutive failures so far (decides the recovery when it opens). */
  #connectionFailureInRun = false;
  #testInFlight = false;
  #timer: NodeJS.Timeout | undefined;
  #backoff: IBackoff<unknown> | undefined;
  /** Counts openings: a probe started for an earlier one (closed and reopened since) drops its answer. */
  #openings = 0;
  #closed = false;
  /** Woken at every state change. */
  #waiters: (() => void)[] = [];

  constructor(inner: Sink, options: BreakerOptions) {
    this.#inner = inner;
    this.#options = options;
    const schedule = options.probeBackoff ?? DEFAULT_PROBE_BACKOFF;
    this.#probeBackoff = new ExponentialBackoff({
      initialDelay: schedule.initialDelayMs,
      maxDelay: schedule.maxDelayMs,
      generator: decorrelatedJitterGenerator,
    });
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** How the open breaker will recover: by probing the database, or by waiting out `openMs`. */
  get recovery(): Recovery {
    return this.#recovery;
  }

  async write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    for (;;) {
      options.signal.throwIfAborted();
      if (this.#state === 'closed') return this.#send(batch, options, false);
      if (this.#state === 'half_open' && !this.#testInFlight) return this.#send(batch, options, true);
      if (this.#state === 'open' && this.#recovery === 'window') throw new BrokenCircuitError();
      await this.#nextChange(options.signal);
    }
  }

  /** Stop probing (the service is closing); writes still waiting are ended by their signals. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #send(batch: readonly QueuedEvent[], options: { signal: AbortSignal }, test: boolean): Promise<WriteResult> {
    if (test) this.#testInFlight = true;
    try {
      const result = await this.#inner.write(batch, options);
      this.#succeeded();
      return result;
    } catch (error) {
      if (isTransientFailure(error)) this.#failed(error, test);
      else if (test) this.#succeeded(); // refused for its data: the database answered
      throw error;
    } finally {
      if (test) {
        this.#testInFlight = false;
        this.#wake();
      }
    }
  }

  #succeeded(): void {
    this.#consecutiveFailures = 0;
    this.#connectionFailureInRun = false;
    if (this.#state !== 'closed') {
      this.#backoff = undefined;
      this.#enter('closed');
    }
  }

  #failed(error: unknown, test: boolean): void {
    this.#consecutiveFailures += 1;
    if (isConnectionFailure(error)) this.#connectionFailureInRun = true;
    if (test || (this.#state === 'closed' && this.#consecutiveFailures >= this.#options.failureThreshold)) this.#open();
  }

  #open(): void {
    this.#openings += 1;
    this.#recovery = this.#connectionFailureInRun && this.#options.probe ? 'probe' : 'window';
    this.#enter('open');
    clearTimeout(this.#timer);
    if (this.#recovery === 'window') this.#after(this.#options.openMs, () => this.#enter('half_open'));
    else this.#scheduleProbe();
  }

  #scheduleProbe(): void {
    this.#backoff = this.#backoff ? this.#backoff.next(undefined) : this.#probeBackoff.next();
    const opening = this.#openings;
    this.#after(this.#backoff.duration, () => void this.#runProbe(opening));
  }

  async #runProbe(opening: number): Promise<void> {
    const probe = this.#options.probe;
    if (!probe || this.#closed || this.#state !== 'open') return;
    // The breaker closed and opened again while this probe ran: the new opening has its own schedule.
    const current = () => opening === this.#openings && this.#state === 'open' && !this.#closed;
    try {
      await probe();
    } catch (error) {
      this.#options.onProbe?.('failure', error);
      if (current() && this.#recovery === 'probe') this.#scheduleProbe();
      return;
    }
    this.#options.onProbe?.('success');
    if (!current()) return;
    // With batches waiting, one of them tests the writes; with none (an idle service), the
    // probe's answer is all the test there is — half-open would only wait, reported as not closed.
    if (this.#waiters.length > 0) this.#enter('half_open');
    else this.#succeeded();
  }

  #after(delayMs: number, callback: () => void): void {
    if (this.#closed) return;
    clearTimeout(this.#timer); // one timer at a time: a replaced one must not fire, and close() must reach it
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      callback();
    }, delayMs);
    this.#timer.unref();
  }

  #enter(state: BreakerState): void {
    if (state === this.#state) return;
    if (state !== 'open') clearTimeout(this.#timer);
    this.#state = state;
    this.#options.onStateChange?.(state);
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next state change (or test verdict); rejects with the signal's reason when it aborts first. */
  #nextChange(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((waiter) => waiter !== wake);
        reject(signal.reason as Error);
      };
      const wake = () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.#waiters.push(wake);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
