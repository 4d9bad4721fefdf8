import type { ErrorCode } from '../errors.ts';

export interface QueueView {
  readonly depth: number;
  readonly capacity: number;
  readonly drainRatePerSecond: number;
  readonly draining: boolean;
  hasRoomFor(count: number, bytes: number): boolean;
}

export type AdmissionDecision =
  | { readonly admit: true }
  | { readonly admit: false; readonly code: ErrorCode; readonly retryAfterSeconds: number };

const MAX_RETRY_AFTER_SECONDS = 60;

/**
 * Load shedding with hysteresis: once the queue passes the high-water mark, intake answers 429
 * until the queue falls below the low-water mark, so the service does not flap at the threshold.
 * A full queue, or a service that is draining, answers 503. Retry-After is the time the measured
 * drain rate needs to bring the queue down to the low-water mark.
 */
export class Admission {
  readonly #queue: QueueView;
  readonly #highWater: number;
  readonly #lowWater: number;
  #shedding = false;

  constructor(queue: QueueView, options: { highWater: number; lowWater: number }) {
    this.#queue = queue;
    this.#highWater = options.highWater;
    this.#lowWater = options.lowWater;
  }

  decide(count = 1, bytes = 0): AdmissionDecision {
    const queue = this.#queue;
    if (queue.draining) return { admit: false, code: 'INGEST_ERR_DRAINING', retryAfterSeconds: 1 };
    const depth = queue.depth;
    if (this.#shedding) {
      if (depth < queue.capacity * this.#lowWater) this.#shedding = false;
    } else if (depth + count > queue.capacity * this.#highWater) {
      this.#shedding = true;
    }
    if (!queue.hasRoomFor(count, bytes)) {
      return { admit: false, code: 'INGEST_ERR_QUEUE_FULL', retryAfterSeconds: this.retryAfterSeconds() };
    }
    if (this.#shedding) {
      return { admit: false, code: 'INGEST_ERR_OVERLOADED', retryAfterSeconds: this.retryAfterSeconds() };
    }
    return { admit: true };
  }

  /**
   * All-or-nothing admission for `count` events at once (bulk): refused whole, with 429, when they
   * would take the queue past the high-water mark. A large request that does not fit does not
   * turn shedding on for everyone else.
   */
  decideBulk(count: number, bytes: number): AdmissionDecision {
    const single = this.decide(1, 0);
    if (!single.admit) return single;
    const queue = this.#queue;
    if (queue.depth + count > queue.capacity * this.#highWater || !queue.hasRoomFor(count, bytes)) {
      return { admit: false, code: 'INGEST_ERR_OVERLOADED', retryAfterSeconds: this.retryAfterSeconds() };
    }
    return { admit: true };
  }

  /** Seconds until the queue is back under the low-water mark at the measured drain rate. */
  retryAfterSeconds(): number {
    const queue = this.#queue;
    const excess = Math.max(queue.depth - queue.capacity * this.#lowWater, 1);
    const rate = queue.drainRatePerSecond;
    if (!(rate > 0)) return MAX_RETRY_AFTER_SECONDS; // nothing has drained yet: the longest wait
    return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(excess / rate)));
  }
}
