/**
 * A token bucket on an injected time: `rate` tokens per second refill it up to `burst`. Hand-written
 * (about 60 lines) because the libraries looked at do not fit: @fastify/rate-limit counts requests
 * per fixed window (no weighted cost, so no bytes/s or events-per-bulk), `limiter` and `bottleneck`
 * read Date.now and are asynchronous (queue and wait) where the gate must answer at once and tests
 * need a fake clock.
 */
export interface BucketLimit {
  /** Tokens per second; Infinity: unlimited. */
  readonly rate: number;
  /** Most tokens the bucket holds: the largest single charge that can ever pass. */
  readonly burst: number;
}

export type BucketDecision = { readonly ok: true } | { readonly ok: false; readonly tooLarge: boolean; readonly retryAfterMs: number };

const OK: BucketDecision = { ok: true };

export class TokenBucket {
  #limit: BucketLimit;
  #tokens: number;
  #atMs: number;

  constructor(limit: BucketLimit, nowMs: number) {
    this.#limit = limit;
    this.#tokens = limit.burst;
    this.#atMs = nowMs;
  }

  get limit(): BucketLimit {
    return this.#limit;
  }

  /** A new limit (an override changed): the tokens held are kept, capped at the new burst. */
  setLimit(limit: BucketLimit, nowMs: number): void {
    this.#refill(nowMs);
    this.#limit = limit;
    this.#tokens = Math.min(this.#tokens, limit.burst);
  }

  /** Tokens held now. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return this.#tokens;
  }

  /**
   * Could `cost` be taken now? Refusals say when it could (the refill time of what is missing),
   * or that it never can (tooLarge: more than the burst; retrying would be an endless 429).
   */
  check(cost: number, nowMs: number): BucketDecision {
    const { rate, burst } = this.#limit;
    if (rate === Infinity) return OK;
    if (cost > burst) return { ok: false, tooLarge: true, retryAfterMs: 0 };
    this.#refill(nowMs);
    if (this.#tokens >= cost) return OK;
    return { ok: false, tooLarge: false, retryAfterMs: ((cost - this.#tokens) / rate) * 1000 };
  }

  /** Take `cost` when it fits (same answer as check). */
  take(cost: number, nowMs: number): BucketDecision {
    const decision = this.check(cost, nowMs);
    if (decision.ok && this.#limit.rate !== Infinity) this.#tokens -= cost;
    return decision;
  }

  #refill(nowMs: number): void {
    const elapsedMs = nowMs - this.#atMs;
    if (elapsedMs <= 0) return;
    this.#atMs = nowMs;
    this.#tokens = Math.min(this.#limit.burst, this.#tokens + (elapsedMs / 1000) * this.#limit.rate);
  }
}
