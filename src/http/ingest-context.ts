import type { Clock } from '../clock.ts';
import type { IngestPipeline } from '../ingest/pipeline.ts';
import type { Durability } from '../wal/durability.ts';
import type { TenantRateLimiter } from '../limits/tenant-rate-limiter.ts';
import type { Admission } from './admission.ts';
import type { TenantFairness } from './tenant-fairness.ts';

/** What both ingest routes (`/event`, `/events`) need, built once by app.ts. */
export interface IngestContext {
  readonly pipeline: IngestPipeline;
  readonly admission: Admission;
  readonly fairness: TenantFairness;
  readonly durability: Durability;
  readonly clock: Clock;
  readonly ackMode: 'queued' | 'committed';
  /** Per-tenant rate limits; undefined when off. */
  readonly rateLimiter: TenantRateLimiter | undefined;
}
