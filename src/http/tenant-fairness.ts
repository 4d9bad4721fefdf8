import type { Clock } from '../clock.ts';
import { IngestError } from '../errors.ts';
import type { RoomWaiters, WaitOutcome } from '../ingest/room-waiters.ts';
import { ADMIT, type AdmissionDecision } from './admission.ts';

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
  /**
   * Policy `standing` (admission.ts): a tenant over its share waits (admitWhenUnderShare) for its
   * events to be stored instead of being refused at once; only a tenant whose wait ran out is
   * refused, at once, while it stays over its share. Default false: refused at once (`depth`).
   */
  readonly waits?: boolean;
}

const PRUNE_INTERVAL_MS = 1000;
const SEEN_RESOLUTION_MS = 50;

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
  /** Tenants whose wait for their share ran out (policy standing): refused while still over it. */
  readonly #shed = new Set<string>();

  constructor(options: TenantFairnessOptions) {
    this.#options = options;
  }

  get activeTenants(): number {
    return this.#lastSeenMs.size;
  }

  /** A lone active tenant's share is the whole queue: only the queue's own limits apply to it. */
  shareOf(): number {
    const { capacity, highWater, minShare } = this.#options;
    if (this.#lastSeenMs.size <= 1) return capacity;
    return Math.max(minShare, Math.floor((capacity * highWater) / this.#lastSeenMs.size));
  }

  /**
   * May `tenant` add `count` events now? Policy depth: the share is checked here, with the count.
   * Policy standing: only a tenant already refused for its share (its wait ran out) and still over
   * it is refused here; the one decision with the real count is admitWhenUnderShare's.
   */
  decide(tenant: string, count: number): AdmissionDecision {
    this.#see(tenant);
    if (this.#options.waits) {
      if (!this.#shed.has(tenant)) return ADMIT;
      if (this.#over(tenant, count)) return this.#refusal();
      this.#shed.delete(tenant);
      return ADMIT;
    }
    if (this.#lastSeenMs.size <= 1) return ADMIT; // alone: only the queue's own limits apply
    if (this.#options.queueDepth() + count <= this.#options.contendedAbove) return ADMIT;
    if (this.#options.tenantDepth(tenant) + count <= this.shareOf()) return ADMIT;
    return this.#refusal();
  }

  /**
   * Policy standing, once per request and tenant, before anything is written: when the queue is
   * contended and `tenant` already holds its share, wait (up to `timeoutMs`) until it does not;
   * a bulk request counts as its events once. Throws INGEST_ERR_TENANT_OVER_SHARE when the wait
   * runs out (the tenant is then refused at once while it stays over its share).
   */
  admitWhenUnderShare(waiters: RoomWaiters, tenant: string, count: number, timeoutMs: number, signal?: AbortSignal): Promise<void> | undefined {
    this.#see(tenant);
    if (!this.#over(tenant, count)) {
      this.#shed.delete(tenant);
      return undefined;
    }
    if (this.#shed.has(tenant)) throw new IngestError('INGEST_ERR_TENANT_OVER_SHARE', undefined, { retryAfterSeconds: this.#options.retryAfterSeconds() });
    const outcome = waiters.wait({ count, fifo: false, timeoutMs, signal, tryGrant: () => !this.#over(tenant, count) });
    if (typeof outcome === 'string') {
      this.#conclude(tenant, outcome);
      return undefined;
    }
    return outcome.then((waited) => this.#conclude(tenant, waited));
  }

  #conclude(tenant: string, outcome: WaitOutcome): void {
    if (outcome === 'granted') return;
    if (outcome === 'closed') throw new IngestError('INGEST_ERR_DRAINING', undefined, { retryAfterSeconds: 1 });
    if (outcome === 'timeout') this.#shed.add(tenant);
    throw new IngestError('INGEST_ERR_TENANT_OVER_SHARE', undefined, { retryAfterSeconds: this.#options.retryAfterSeconds() });
  }

  /** Contended, and the tenant holds its share already (policy standing). */
  #over(tenant: string, count: number): boolean {
    if (this.#lastSeenMs.size <= 1) return false;
    if (this.#options.queueDepth() + count <= this.#options.contendedAbove) return false;
    return this.#options.tenantDepth(tenant) + 1 > this.shareOf();
  }

  #refusal(): AdmissionDecision {
    return { admit: false, code: 'INGEST_ERR_TENANT_OVER_SHARE', retryAfterSeconds: this.#options.retryAfterSeconds() };
  }

  #see(tenant: string): void {
    const nowMs = this.#options.clock.now();
    // Seen just now (the same request's earlier check, or a busy tenant): nothing to update. The
    // order by last sight is then off by at most this much, against a window of seconds.
    const seenMs = this.#lastSeenMs.get(tenant);
    if (seenMs !== undefined && nowMs - seenMs < SEEN_RESOLUTION_MS && nowMs >= seenMs) return;
    this.#lastSeenMs.delete(tenant); // re-insert: the map stays ordered by last sight
    this.#lastSeenMs.set(tenant, nowMs);
    this.#prune(nowMs);
  }

  #prune(nowMs: number): void {
    if (nowMs - this.#lastPruneMs < PRUNE_INTERVAL_MS) return;
    this.#lastPruneMs = nowMs;
    const cutoff = nowMs - this.#options.activeWindowMs;
    for (const [tenant, seenMs] of this.#lastSeenMs) {
      if (seenMs >= cutoff) break; // oldest first: the rest are newer
      this.#lastSeenMs.delete(tenant);
      this.#shed.delete(tenant);
    }
  }
}
