import type { BatchWindow } from './batcher.ts';

/**
 * The adaptive batch window (BATCH_WINDOW=adaptive): an AIMD controller that moves the batcher's
 * size and wait against a latency SLO (accepted → committed). Knows nothing of SQL: the caller
 * says what a settled batch looked like and when the database signalled congestion.
 *
 * Signal. Every batch formed under the current window gives one sample, its worst latency (from
 * its first item's enqueue to its settlement). The samples feed an exponentially weighted mean and
 * variance; the controller compares `mean + deviationScale × standard deviation` (a damped,
 * upper-tail estimate: "p99" below) with the SLO. Batches opened before the last change are
 * ignored: they carry the old window.
 *
 * Decisions, at most one per interval (the smoothed latency, at least minIntervalMs) and only
 * after minSamples batches formed under the current window (a congestion signal needs none), so a burst
 * of failures or slow batches from one event moves the window once, not once per batch. The
 * target is T = SLO × (1 − headroom) (headroom 0.1: 225 ms of a 250 ms SLO):
 *  - congestion seen in the interval (timeouts, too many connections, connection errors — never
 *    data errors): size and wait × decreaseRatio (`decrease_congestion`); signals within one
 *    interval after such a decrease belong to the same episode and are not counted again;
 *  - p99 above the SLO at breachDecisions decisions running (default 2: one slow interval on a
 *    busy machine is noise, two are a trend), batches not queueing for a flush slot: size and
 *    wait × max(decreaseRatio, 1 − (p99 − T) / wait) (`decrease_latency`): the linger gives up
 *    the overshoot, not half of itself, so a database that became 80 ms slower costs about 80 ms
 *    of linger, in one decision; a first breach holds;
 *  - p99 above the SLO while batches queue for a flush slot (the wait between sealing and
 *    writing, summed over the interval, above queueingShare of the latency — the writes cannot
 *    keep up with batches this small; TCP Vegas reads a queue from its RTT the same way):
 *    shrinking would make more, smaller batches and a longer queue, so it grows instead, ×
 *    1 / decreaseRatio (size when batches filled, else the wait: `increase_size`,
 *    `increase_wait`), at once — throughput first, and quickly, since the queue grows meanwhile;
 *  - p99 below T and batches filled (left on size or bytes): size + sizeStep (`increase_size`);
 *    or batches left on their timer: wait + min(waitStepMs, T − p99) (`increase_wait`), so the
 *    wait climbs to where the p99 estimate meets the target and stops there;
 *  - otherwise `hold`.
 * Size and wait stay within [min, max]; the controller starts from the configured window.
 *
 * Taken from Vector's adaptive request concurrency (src/sinks/util/adaptive_concurrency/
 * controller.rs): an EWMA with variance as the reference, a deviation band (its
 * rtt_deviation_scale, 2.5) instead of a fixed threshold, ewma_alpha 0.4, one adjustment per
 * interval of one mean RTT, additive increase only with evidence that the limit binds (its
 * `reached_limit`: here, batches that filled), multiplicative decrease on explicit back pressure
 * as well as on latency, and only successful attempts count as latency samples. Changed here: the
 * reference is an absolute SLO, not the past mean (the window trades latency for commits, so the
 * budget is the point); a latency decrease takes back the overshoot (at most half) instead of
 * a fixed × 0.9, a congestion decrease halves (issue 12); evidence from batches opened before a
 * change is discarded, so one slow interval does not cut twice; and a batch window, unlike a
 * concurrency limit, must not shrink when the writes are the bottleneck (smaller batches mean
 * more writes), hence the queueing rule.
 */
export type WindowDecision = 'increase_size' | 'increase_wait' | 'decrease_latency' | 'decrease_congestion' | 'hold';

export const WINDOW_DECISIONS: readonly WindowDecision[] = ['increase_size', 'increase_wait', 'decrease_latency', 'decrease_congestion', 'hold'];

export interface AdaptiveWindowOptions {
  readonly initial: BatchWindow;
  readonly min: BatchWindow;
  readonly max: BatchWindow;
  readonly latencySloMs: number;
  /** The target: grow only while p99 < SLO × (1 − headroom); a latency decrease aims at it. Default 0.1. */
  readonly headroom?: number;
  /** Weight of a new sample in the mean and variance. Default 0.4 (Vector's ewma_alpha). */
  readonly ewmaAlpha?: number;
  /** p99 estimate = mean + this × standard deviation. Default 2.5 (Vector's rtt_deviation_scale). */
  readonly deviationScale?: number;
  /** Multiplicative decrease. Default 0.5. */
  readonly decreaseRatio?: number;
  /** Additive increases. Defaults: a tenth of the initial size and wait (at least 1). */
  readonly sizeStep?: number;
  readonly waitStepMs?: number;
  /** Shortest interval between decisions. Default 50 ms. */
  readonly minIntervalMs?: number;
  /** Samples from batches formed under the current window before a latency decision. Default 3. */
  readonly minSamples?: number;
  /** Consecutive decisions with p99 above the SLO before a decrease. Default 2. */
  readonly breachDecisions?: number;
  /**
   * Batches queue for a flush slot when the mean time from sealing to the write's start is above
   * this share of the mean latency. Default 0.25. Needs BatchObservation.flushMs.
   */
  readonly queueingShare?: number;
  readonly now: () => number;
}

/** What the caller saw of one settled batch. */
export interface BatchObservation {
  /** Clock ms of the batch's first enqueue: the batch was formed under the window in force then. */
  readonly openedAtMs: number;
  /** Its worst latency: settlement − first enqueue. */
  readonly latencyMs: number;
  /** It left because it reached the size or bytes limit. */
  readonly filled: boolean;
  /** It left on its linger timer. */
  readonly timed: boolean;
  /**
   * How long its write took (flush start → settled), when known. The rest of the latency is the
   * linger plus the wait for a flush slot; for a batch that left on its timer the linger is the
   * window's wait, so the slot wait is latency − flushMs − wait (for a filled batch that is a
   * lower bound).
   */
  readonly flushMs?: number;
}

export interface WindowChange {
  readonly decision: WindowDecision;
  readonly window: BatchWindow;
  /** The p99 estimate the decision was taken on (ms), undefined before any sample. */
  readonly latencyEstimateMs: number | undefined;
}

export class AdaptiveWindow {
  readonly #options: Required<Omit<AdaptiveWindowOptions, 'now'>> & { readonly now: () => number };
  #window: BatchWindow;
  #mean: number | undefined;
  #variance = 0;
  /** Samples since the last change. */
  #samples = 0;
  /** Sums over the interval's samples that carried flushMs: slot wait (lower bound) and latency. */
  #slotWaitSumMs = 0;
  #slotWaitLatencySumMs = 0;
  /** Decisions in a row that found p99 above the SLO. */
  #breaches = 0;
  #changedAtMs: number;
  #nextDecisionAtMs: number;
  /** Congestion signals before this belong to the episode the last decrease answered (TCP: one cut per round trip of losses). */
  #congestionEpisodeEndsAtMs = Number.NEGATIVE_INFINITY;
  // Evidence gathered in the current interval.
  #congested = false;
  #filled = false;
  #timed = false;

  constructor(options: AdaptiveWindowOptions) {
    const clamp = (window: BatchWindow) => AdaptiveWindow.#clamp(window, options.min, options.max);
    if (options.min.maxBatchSize > options.max.maxBatchSize || options.min.maxWaitMs > options.max.maxWaitMs) {
      throw new RangeError('the adaptive window minimum must not exceed its maximum');
    }
    this.#options = {
      headroom: 0.1,
      ewmaAlpha: 0.4,
      deviationScale: 2.5,
      decreaseRatio: 0.5,
      sizeStep: Math.max(1, Math.round(options.initial.maxBatchSize / 10)),
      waitStepMs: Math.max(1, Math.round(options.initial.maxWaitMs / 10)),
      minIntervalMs: 50,
      minSamples: 3,
      breachDecisions: 2,
      queueingShare: 0.25,
      ...options,
    };
    this.#window = clamp(options.initial);
    // Every batch before the first change was formed under the configured window: all count.
    this.#changedAtMs = Number.NEGATIVE_INFINITY;
    this.#nextDecisionAtMs = options.now();
  }

  get window(): BatchWindow {
    return this.#window;
  }

  /** mean + deviationScale × standard deviation of the batch latency samples, or undefined before any. */
  get latencyEstimateMs(): number | undefined {
    return this.#mean === undefined ? undefined : this.#mean + this.#options.deviationScale * Math.sqrt(this.#variance);
  }

  /** A batch settled (stored or dead-lettered). Returns the decision when one was due. */
  observeBatch(batch: BatchObservation): WindowChange | undefined {
    if (batch.openedAtMs >= this.#changedAtMs) {
      this.#sample(batch.latencyMs);
      if (batch.flushMs !== undefined) {
        this.#slotWaitSumMs += Math.max(0, batch.latencyMs - batch.flushMs - this.#window.maxWaitMs);
        this.#slotWaitLatencySumMs += batch.latencyMs;
      }
      this.#filled ||= batch.filled;
      this.#timed ||= batch.timed;
    }
    return this.#maybeDecide();
  }

  /** The database signalled congestion (a timeout, too many connections, a lost connection). */
  noteCongestion(): WindowChange | undefined {
    if (this.#options.now() < this.#congestionEpisodeEndsAtMs) return undefined;
    this.#congested = true;
    return this.#maybeDecide();
  }

  #sample(latencyMs: number): void {
    this.#samples += 1;
    if (this.#mean === undefined) {
      this.#mean = latencyMs;
      this.#variance = 0;
      return;
    }
    // West's incremental EWMA of mean and variance (as Vector's EwmaVar).
    const alpha = this.#options.ewmaAlpha;
    const difference = latencyMs - this.#mean;
    const increment = alpha * difference;
    this.#mean += increment;
    this.#variance = (1 - alpha) * (this.#variance + difference * increment);
  }

  #maybeDecide(): WindowChange | undefined {
    const nowMs = this.#options.now();
    if (nowMs < this.#nextDecisionAtMs) return undefined;
    const estimate = this.latencyEstimateMs;
    if (!this.#congested && this.#samples < this.#options.minSamples) return undefined; // not enough to go on yet
    const decision = this.#decide(estimate);
    const before = this.#window;
    this.#window = this.#apply(decision, estimate);
    if (this.#window.maxBatchSize !== before.maxBatchSize || this.#window.maxWaitMs !== before.maxWaitMs) {
      this.#changedAtMs = nowMs;
      // Start the next estimate from the batches formed under the new window only.
      this.#mean = undefined;
      this.#variance = 0;
      this.#samples = 0;
      this.#breaches = 0;
    }
    this.#nextDecisionAtMs = nowMs + Math.max(this.#options.minIntervalMs, estimate ?? 0);
    if (decision === 'decrease_congestion') this.#congestionEpisodeEndsAtMs = this.#nextDecisionAtMs;
    this.#congested = false;
    this.#filled = false;
    this.#timed = false;
    this.#slotWaitSumMs = 0;
    this.#slotWaitLatencySumMs = 0;
    return { decision, window: this.#window, latencyEstimateMs: estimate };
  }

  /** Batches waited for a flush slot for more than queueingShare of their latency, this interval. */
  get #queueing(): boolean {
    return this.#slotWaitLatencySumMs > 0 && this.#slotWaitSumMs > this.#options.queueingShare * this.#slotWaitLatencySumMs;
  }

  #target(): number {
    return this.#options.latencySloMs * (1 - this.#options.headroom);
  }

  #decide(estimate: number | undefined): WindowDecision {
    const { latencySloMs, max, breachDecisions } = this.#options;
    this.#breaches = estimate !== undefined && estimate > latencySloMs ? this.#breaches + 1 : 0;
    if (this.#congested) return 'decrease_congestion';
    if (estimate === undefined) return 'hold';
    const roomForSize = this.#window.maxBatchSize < max.maxBatchSize;
    const roomForWait = this.#window.maxWaitMs < max.maxWaitMs;
    if (this.#breaches > 0 && this.#queueing) {
      // The writes are the bottleneck: fewer, larger batches drain the queue; smaller ones lengthen it.
      if (this.#filled && roomForSize) return 'increase_size';
      if (roomForWait) return 'increase_wait';
      return 'hold';
    }
    if (this.#breaches >= breachDecisions) return 'decrease_latency';
    if (this.#breaches > 0) return 'hold';
    if (estimate >= this.#target()) return 'hold';
    if (this.#filled && roomForSize) return 'increase_size';
    if (this.#timed && roomForWait) return 'increase_wait';
    return 'hold';
  }

  #apply(decision: WindowDecision, estimate: number | undefined): BatchWindow {
    const { min, max, decreaseRatio, sizeStep, waitStepMs } = this.#options;
    const { maxBatchSize, maxWaitMs } = this.#window;
    const scaled = (ratio: number) =>
      AdaptiveWindow.#clamp({ maxBatchSize: Math.floor(maxBatchSize * ratio), maxWaitMs: Math.floor(maxWaitMs * ratio) }, min, max);
    if (decision.startsWith('increase') && this.#breaches > 0) {
      // Growing out of a queue (only a queue makes a breach grow the window): multiplicatively.
      const grown = decision === 'increase_size' ? { maxBatchSize: Math.ceil(maxBatchSize / decreaseRatio), maxWaitMs } : { maxBatchSize, maxWaitMs: Math.ceil(maxWaitMs / decreaseRatio) };
      return AdaptiveWindow.#clamp(grown, min, max);
    }
    switch (decision) {
      case 'increase_size':
        return AdaptiveWindow.#clamp({ maxBatchSize: maxBatchSize + sizeStep, maxWaitMs }, min, max);
      case 'increase_wait': {
        // Toward the target, not past it: the step shrinks as the estimate nears it.
        const room = estimate === undefined || estimate > this.#target() ? waitStepMs : this.#target() - estimate;
        return AdaptiveWindow.#clamp({ maxBatchSize, maxWaitMs: maxWaitMs + Math.max(1, Math.min(waitStepMs, Math.round(room))) }, min, max);
      }
      case 'decrease_latency': {
        // Give up the overshoot from the linger (size with it, so a batch that fills early shrinks as much), at most half.
        const overshoot = (estimate ?? 0) - this.#target();
        return scaled(Math.max(decreaseRatio, maxWaitMs > 0 ? 1 - overshoot / maxWaitMs : decreaseRatio));
      }
      case 'decrease_congestion':
        return scaled(decreaseRatio);
      case 'hold':
        return this.#window;
    }
  }

  static #clamp(window: BatchWindow, min: BatchWindow, max: BatchWindow): BatchWindow {
    return {
      maxBatchSize: Math.min(max.maxBatchSize, Math.max(min.maxBatchSize, window.maxBatchSize)),
      maxWaitMs: Math.min(max.maxWaitMs, Math.max(min.maxWaitMs, window.maxWaitMs)),
    };
  }
}

/**
 * The bounds the service uses around the configured window: down to an eighth of it (at least 1
 * event and 1 ms), up to 4 × the size (at most half the queue, so two batches fit in it) and a
 * wait of the SLO itself (the latency estimate stops it before).
 */
export function adaptiveBounds(initial: BatchWindow, queueCapacity: number, latencySloMs: number): { min: BatchWindow; max: BatchWindow } {
  return {
    min: { maxBatchSize: Math.max(1, Math.floor(initial.maxBatchSize / 8)), maxWaitMs: Math.max(1, Math.floor(initial.maxWaitMs / 8)) },
    max: {
      maxBatchSize: Math.max(initial.maxBatchSize, Math.min(4 * initial.maxBatchSize, Math.floor(queueCapacity / 2))),
      maxWaitMs: Math.max(initial.maxWaitMs, latencySloMs),
    },
  };
}
