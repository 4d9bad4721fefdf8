import type { Waiter } from '../batcher/batcher.ts';
import { IngestError } from '../errors.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import type { Durability } from '../wal/durability.ts';
import { WalFailedError, WalFullError } from '../wal/errors.ts';
import type { IngestContext } from './ingest-context.ts';
import type { TenantFairness } from './tenant-fairness.ts';

const WAL_RETRY_AFTER_SECONDS = 5;

/**
 * Make validated events durable (per DURABILITY), then queue all of them or none. Resolves once
 * they may be acknowledged; throws the IngestError to answer otherwise.
 *
 * A refused event must never be stored later, so everything that can refuse is checked before
 * anything is written: draining, the log's state, the tenant's share and queue room for the whole
 * request (with ADMISSION_POLICY=standing both are waited for, in admission.ts, before the
 * write: never after it; the room is reserved on the pipeline until the fsync returns, so a
 * request behind sees the queue as already holding these events), and log room for the whole
 * request (persist writes all or none).
 * The one refusal left after the write, the queue closing while the fsync ran (a shutdown whose
 * deadline did not wait for this request), withdraws the records with a durable cancellation
 * record before answering, so recovery never replays them.
 */
export async function acceptEvents(
  context: Pick<IngestContext, 'pipeline' | 'durability' | 'admission'> & { readonly fairness?: TenantFairness },
  events: readonly QueuedEvent[],
  waiters?: readonly Waiter[],
  signal?: AbortSignal,
): Promise<void> {
  const { pipeline, durability, admission } = context;
  refuseUnlessOpen(context);
  const bytes = events.reduce((sum, event) => sum + event.bytes, 0);
  if (admission.waits) {
    // Each returns undefined when there was nothing to wait for (no promise on the common path).
    const fairness = context.fairness;
    if (fairness && events.length === 1) {
      const share = fairness.admitWhenUnderShare(pipeline.waiters, events[0]!.tenant, 1, admission.waitMs, signal);
      if (share) await share;
    } else if (fairness) {
      for (const [tenant, count] of countByTenant(events)) {
        const share = fairness.admitWhenUnderShare(pipeline.waiters, tenant, count, admission.waitMs, signal);
        if (share) await share;
      }
    }
    const room = admission.admitWhenRoom(pipeline, events.length, bytes, signal); // reserves the room
    if (room) await room;
    try {
      refuseUnlessOpen(context); // the log or the service may have changed during the wait
    } catch (error) {
      pipeline.release(events.length, bytes);
      throw error;
    }
  } else {
    if (!pipeline.hasUnreservedRoomFor(events.length, bytes)) {
      throw new IngestError('INGEST_ERR_QUEUE_FULL', undefined, { retryAfterSeconds: admission.retryAfterSeconds() });
    }
    pipeline.reserve(events.length, bytes);
  }
  let durable: readonly QueuedEvent[];
  try {
    durable = await durability.persist(events);
  } catch (error) {
    if (error instanceof WalFullError) throw new IngestError('INGEST_ERR_WAL_FULL', error.message, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error });
    if (error instanceof WalFailedError) throw new IngestError('INGEST_ERR_WAL_FAILED', undefined, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error });
    throw error;
  } finally {
    pipeline.release(events.length, bytes);
  }
  // Nothing runs between here and the enqueues: the room checked (and reserved) above is still
  // there, and the queue is either open for all of them or closed for all of them. A drain that
  // began during the fsync still takes this request (the drain waits for requests in flight).
  if (!pipeline.hasRoomFor(durable.length, bytes)) await refuseWritten(durability, durable, 'INGEST_ERR_QUEUE_FULL', admission.retryAfterSeconds());
  const first = durable.length > 0 ? pipeline.enqueue(durable[0]!, waiters?.[0]) : { ok: true as const };
  if (!first.ok) {
    const code = first.reason === 'closed' ? 'INGEST_ERR_DRAINING' : 'INGEST_ERR_QUEUE_FULL';
    await refuseWritten(durability, durable, code, admission.retryAfterSeconds());
  }
  for (let index = 1; index < durable.length; index += 1) pipeline.enqueue(durable[index]!, waiters?.[index]);
}

function refuseUnlessOpen(context: Pick<IngestContext, 'pipeline' | 'durability' | 'admission'>): void {
  const { pipeline, durability, admission } = context;
  if (pipeline.draining) throw new IngestError('INGEST_ERR_DRAINING', undefined, { retryAfterSeconds: admission.retryAfterSeconds() });
  if (durability.failed) throw new IngestError('INGEST_ERR_WAL_FAILED', undefined, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS });
  const refusing = durability.refusing;
  if (refusing) throw new IngestError('INGEST_ERR_WAL_FULL', `the write-ahead log refuses new events (${refusing}); nothing was acknowledged`, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS });
}

function countByTenant(events: readonly QueuedEvent[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const event of events) counts.set(event.tenant, (counts.get(event.tenant) ?? 0) + 1);
  return counts;
}

/** Refuse events already in the log: withdraw them durably first, so the 503 is true. */
async function refuseWritten(durability: Durability, durable: readonly QueuedEvent[], code: 'INGEST_ERR_DRAINING' | 'INGEST_ERR_QUEUE_FULL', retryAfterSeconds: number): Promise<never> {
  try {
    await durability.cancel(durable);
  } catch (error) {
    // The records stay in the log and a later start may store them: do not claim otherwise.
    throw new IngestError(
      'INGEST_ERR_WAL_FAILED',
      'the events reached the write-ahead log but could not be withdrawn, so they may still be stored; retry with the same ids (a retried id is not stored twice)',
      { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error },
    );
  }
  throw new IngestError(code, undefined, { retryAfterSeconds });
}
