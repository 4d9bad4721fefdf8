import type { IncomingHttpHeaders } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.ts';
import { IngestError, stacklessIngestError } from '../errors.ts';
import { TokenBucket, type BucketDecision, type BucketLimit } from './token-bucket.ts';

/** One tenant's limits: events/s and bytes/s (request bodies as sent, Content-Length). */
export interface TenantLimits {
  readonly events: BucketLimit;
  readonly bytes: BucketLimit;
}

/** A stored override: each field left null falls back to the default (TENANT_*). */
export interface TenantLimitOverride {
  readonly tenant: string;
  readonly rate: number | null;
  readonly burst: number | null;
  readonly byteRate: number | null;
  readonly byteBurst: number | null;
}

interface TenantBuckets {
  readonly events: TokenBucket;
  readonly bytes: TokenBucket;
  /**
   * What the tenant's last counted bulk told about its bulks, for the gate's estimate of the next
   * one before its body is read: bytes per event as sent (Content-Length / lines), plain and
   * content-encoded apart (a gzip body holds ~6× the events per byte), and its line count (for a
   * chunked body, which has no length to scale by). Undefined until a bulk was counted.
   */
  plainBytesPerEvent: number | undefined;
  encodedBytesPerEvent: number | undefined;
  lastBulkEvents: number | undefined;
}

/** A bulk request as the gate sees it, before its body: its Content-Length and whether it is content-encoded. */
export interface BulkHead {
  readonly bytes: number | undefined;
  readonly encoded: boolean;
}

/** What a request's headers say of its body before it is read (undefined bytes: chunked). */
export function bodyHeadOf(headers: IncomingHttpHeaders): BulkHead {
  const length = headers['content-length'];
  return { bytes: length === undefined ? undefined : Number(length), encoded: headers['content-encoding'] !== undefined };
}

const MAX_TENANTS = 100_000;

/**
 * Per-tenant token buckets, checked at the ingest gate before the body is read (the tenant comes
 * from the API key). Events: a POST /event is charged 1 at the gate; a bulk is checked at the gate
 * against an estimate of its events (below) and charged its line count once parsed (chargeEvents).
 * The estimate is the tenant's last counted bulk scaled by Content-Length (its bytes per event,
 * plain and encoded bodies apart; a chunked body: the last bulk's count), at least 1 and at most
 * the burst (so the gate never answers 413 on a guess, and a bucket that is full always lets the
 * bulk be counted, which corrects the estimate). Without it a tenant holding one token passed the
 * gate with every bulk, each parsed in full only to be refused by its count: a refill of 1 event/s
 * against bulks of 100 kept the bucket between 1 and 100 tokens for good. Bytes: the
 * Content-Length, charged at the gate. A charge larger than the bucket's burst is
 * INGEST_ERR_TENANT_BURST_EXCEEDED (413) — it could never pass; otherwise a refusal is
 * INGEST_ERR_TENANT_RATE_LIMITED (429) with Retry-After = the time to refill what is missing.
 */
export class TenantRateLimiter {
  readonly #clock: Clock;
  readonly #defaults: TenantLimits;
  #overrides = new Map<string, TenantLimits>();
  readonly #buckets = new LRUCache<string, TenantBuckets>({ max: MAX_TENANTS });

  constructor(options: { clock: Clock; defaults: TenantLimits }) {
    this.#clock = options.clock;
    this.#defaults = options.defaults;
  }

  limitsOf(tenant: string): TenantLimits {
    return this.#overrides.get(tenant) ?? this.#defaults;
  }

  /** Replace every override (the poller's latest read); buckets already made take their new limits. */
  setOverrides(rows: readonly TenantLimitOverride[]): void {
    const next = new Map<string, TenantLimits>();
    for (const row of rows) {
      const rate = row.rate ?? this.#defaults.events.rate;
      const byteRate = row.byteRate ?? this.#defaults.bytes.rate;
      next.set(row.tenant, {
        events: { rate, burst: row.burst ?? (row.rate === null ? this.#defaults.events.burst : rate) },
        bytes: { rate: byteRate, burst: row.byteBurst ?? (row.byteRate === null ? this.#defaults.bytes.burst : byteRate) },
      });
    }
    const changed = new Set([...this.#overrides.keys(), ...next.keys()]);
    this.#overrides = next;
    const nowMs = this.#clock.now();
    for (const tenant of changed) {
      const buckets = this.#buckets.peek(tenant);
      if (!buckets) continue;
      const limits = this.limitsOf(tenant);
      buckets.events.setLimit(limits.events, nowMs);
      buckets.bytes.setLimit(limits.bytes, nowMs);
    }
  }

  /**
   * The gate's check, before the body is read: `events` is 1 for POST /event (charged now) and 0
   * for a bulk (only checked for one token; charged once its lines are counted). `bytes` is the
   * Content-Length (undefined: chunked, not charged). Undefined when admitted.
   */
  admitRequest(tenant: string, events: 0 | 1, bytes: number | undefined, encoded = false): IngestError | undefined {
    const buckets = this.#bucketsOf(tenant);
    const nowMs = this.#clock.now();
    const needed = events === 1 ? 1 : estimateBulkEvents(buckets, { bytes, encoded });
    const eventDecision = buckets.events.check(needed, nowMs);
    if (!eventDecision.ok) return refusal(tenant, 'events', eventDecision, needed, buckets.events.limit);
    if (bytes !== undefined && bytes > 0) {
      const byteDecision = buckets.bytes.take(bytes, nowMs);
      if (!byteDecision.ok) return refusal(tenant, 'bytes', byteDecision, bytes, buckets.bytes.limit);
    }
    if (events === 1) buckets.events.take(1, nowMs);
    return undefined;
  }

  /**
   * A bulk's events, once counted; `head` (its Content-Length and encoding) teaches the gate's
   * estimate for the tenant's next bulk, whatever the answer. Undefined when admitted.
   */
  chargeEvents(tenant: string, count: number, head?: BulkHead): IngestError | undefined {
    const buckets = this.#bucketsOf(tenant);
    if (count > 0) {
      buckets.lastBulkEvents = count;
      if (head?.bytes !== undefined && head.bytes > 0) {
        if (head.encoded) buckets.encodedBytesPerEvent = head.bytes / count;
        else buckets.plainBytesPerEvent = head.bytes / count;
      }
    }
    const decision = buckets.events.take(count, this.#clock.now());
    return decision.ok ? undefined : refusal(tenant, 'events', decision, count, buckets.events.limit);
  }

  #bucketsOf(tenant: string): TenantBuckets {
    let buckets = this.#buckets.get(tenant);
    if (!buckets) {
      const limits = this.limitsOf(tenant);
      const nowMs = this.#clock.now();
      buckets = {
        events: new TokenBucket(limits.events, nowMs),
        bytes: new TokenBucket(limits.bytes, nowMs),
        plainBytesPerEvent: undefined,
        encodedBytesPerEvent: undefined,
        lastBulkEvents: undefined,
      };
      this.#buckets.set(tenant, buckets);
    }
    return buckets;
  }
}

/** The events a bulk is checked for at the gate: see the class comment. */
function estimateBulkEvents(buckets: TenantBuckets, head: BulkHead): number {
  const bytesPerEvent = head.encoded ? buckets.encodedBytesPerEvent : buckets.plainBytesPerEvent;
  const estimate =
    head.bytes === undefined ? (buckets.lastBulkEvents ?? 1) : bytesPerEvent === undefined ? 1 : Math.floor(head.bytes / bytesPerEvent);
  return Number.isFinite(estimate) ? Math.max(1, Math.min(estimate, buckets.events.limit.burst)) : 1;
}

function refusal(tenant: string, what: 'events' | 'bytes', decision: Exclude<BucketDecision, { ok: true }>, cost: number, limit: BucketLimit): IngestError {
  const unit = what === 'events' ? 'events' : 'bytes';
  if (decision.tooLarge) {
    return stacklessIngestError(
      'INGEST_ERR_TENANT_BURST_EXCEEDED',
      `this request is ${cost} ${unit}; tenant ${tenant} may send at most ${limit.burst} ${unit} at once (its burst): split it`,
    );
  }
  return stacklessIngestError('INGEST_ERR_TENANT_RATE_LIMITED', `tenant ${tenant} is over its limit of ${limit.rate} ${unit}/s; retry after Retry-After`, {
    retryAfterSeconds: Math.max(1, Math.ceil(decision.retryAfterMs / 1000)),
  });
}
