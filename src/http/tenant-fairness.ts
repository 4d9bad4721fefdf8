import type { Clock } from '../clock.ts';
import type { AdmissionDecision } from './admission.ts';

export interface TenantFairnessOptions {
  readonly clock: Clock;
  readonly capacity: number;
  readonly highWater: number;
  /** A tenant may always hold this many events, whatever its share. */
  readonly minShare: number;
  /** Tenants seen within this window count as active. */
  readonly activeWindowMs: number;
  /** Unsettled events of a tenant right now. */
  readonly tenantDepth: (tenant: string) => number;
  /** Unsettled events of all tenants right now. */
  readonly queueDepth: () => number;
  /** Below this total depth the queue is not contended and shares are not enforced (work-conserving). */
  readonly contendedAbove: number;
  readonly retryAfterSeconds: () => number;
}

const PRUNE_INTERVAL_MS = 1000;

/**
 * Fair shares of the queue. While the queue is contended (above the low-water mark), the queue up
 * to its high-water mark is split evenly between the tenants active in the last activeWindowMs;
 * a tenant holding more than its share (or minShare, whichever is larger) gets 429 while quieter
 * tenants keep being admitted. Below the low-water mark nobody is refused for fairness (a lone
 * busy tenant may use an idle queue). One flooding tenant therefore cannot push the whole queue
 * into shedding for everyone. Holds in both batch-partition modes: it counts queued events.
 */
export class TenantFairness {
  readonly #options: TenantFairnessOptions;
  readonly #lastSeenMs = new Map<string, number>();
  #lastPruneMs = 0;

  constructor(options: TenantFairnessOptions) {
    this.#options = options;
  }

  get activeTenants(): number {
    return this.#lastSeenMs.size;
  }

  shareOf(): number {
    const { capacity, highWater, minShare } = this.#options;
    return Math.max(minShare, Math.floor((capacity * highWater) / Math.max(1, this.#lastSeenMs.size)));
  }

  /** May `tenant` add `count` events now? */
  decide(tenant: string, count: number): AdmissionDecision {
    const nowMs = this.#options.clock.now();
    this.#lastSeenMs.delete(tenant); // re-insert: the map stays ordered by last sight
    this.#lastSeenMs.set(tenant, nowMs);
    this.#prune(nowMs);
    if (this.#options.queueDepth() + count <= this.#options.contendedAbove) return { admit: true };
    if (this.#options.tenantDepth(tenant) + count <= this.shareOf()) return { admit: true };
    return { admit: false, code: 'INGEST_ERR_TENANT_OVER_SHARE', retryAfterSeconds: this.#options.retryAfterSeconds() };
  }

  #prune(nowMs: number): void {
    if (nowMs - this.#lastPruneMs < PRUNE_INTERVAL_MS) return;
    this.#lastPruneMs = nowMs;
    const cutoff = nowMs - this.#options.activeWindowMs;
    for (const [tenant, seenMs] of this.#lastSeenMs) {
      if (seenMs >= cutoff) break; // oldest first: the rest are newer
      this.#lastSeenMs.delete(tenant);
    }
  }
}
