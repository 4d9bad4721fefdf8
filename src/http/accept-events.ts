import type { Waiter } from '@audit-ingest/batcher';
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
  context: AcceptContext,
  events: readonly QueuedEvent[],
  waiters?: readonly Waiter[],
  signal?: AbortSignal,
): Promise<void> {
  const pending = acceptEventsNow(context, events, waiters, signal);
  if (pending) await pending;
}

type AcceptContext = Pick<IngestContext, 'pipeline' | 'durability' | 'admission'> & { readonly fairness?: TenantFairness };

/**
 * acceptEvents without a promise where none is needed: returns undefined when the events are
 * already queued (room was there and the durability needed no wait: DURABILITY=memory), a
 * promise otherwise, and throws the refusal synchronously when it is known at once. The
 * single-event route calls this: most requests then cost no promise and no microtask here.
 */
export function acceptEventsNow(context: AcceptContext, events: readonly QueuedEvent[], waiters?: readonly Waiter[], signal?: AbortSignal): Promise<void> | undefined {
  const { pipeline, admission } = context;
  refuseUnlessOpen(context);
  const bytes = events.length === 1 ? events[0]!.bytes : events.reduce((sum, event) => sum + event.bytes, 0);
  if (!admission.waits) {
    if (!pipeline.hasUnreservedRoomFor(events.length, bytes)) {
      throw new IngestError('INGEST_ERR_QUEUE_FULL', undefined, { retryAfterSeconds: admission.retryAfterSeconds() });
    }
    pipeline.reserve(events.length, bytes);
    return persistAndQueue(context, events, bytes, waiters);
  }
  const waited = waitForShareAndRoom(context, events, bytes, signal); // reserves the room
  if (!waited) return persistAndQueue(context, events, bytes, waiters);
  return waited.then(() => {
    try {
      refuseUnlessOpen(context); // the log or the service may have changed during the wait
    } catch (error) {
      pipeline.release(events.length, bytes);
      throw error;
    }
    return persistAndQueue(context, events, bytes, waiters);
  });
}

/**
 * Policy standing: wait for the tenants' shares, then for room (reserved on the pipeline when
 * this returns or resolves). Undefined when nothing had to be waited for.
 */
function waitForShareAndRoom(context: AcceptContext, events: readonly QueuedEvent[], bytes: number, signal: AbortSignal | undefined): Promise<void> | undefined {
  const { pipeline, admission, fairness } = context;
  let shares: Promise<void> | undefined;
  if (fairness && events.length === 1) {
    shares = fairness.admitWhenUnderShare(pipeline.waiters, events[0]!.tenant, 1, admission.waitMs, signal);
  } else if (fairness) {
    for (const [tenant, count] of countByTenant(events)) {
      const share = shares
        ? shares.then(() => fairness.admitWhenUnderShare(pipeline.waiters, tenant, count, admission.waitMs, signal))
        : fairness.admitWhenUnderShare(pipeline.waiters, tenant, count, admission.waitMs, signal);
      shares = share;
    }
  }
  if (shares) return shares.then(() => admission.admitWhenRoom(pipeline, events.length, bytes, signal));
  return admission.admitWhenRoom(pipeline, events.length, bytes, signal);
}

/** Make the events durable (room reserved), then queue them all: undefined when no wait was needed. */
function persistAndQueue(context: AcceptContext, events: readonly QueuedEvent[], bytes: number, waiters: readonly Waiter[] | undefined): Promise<void> | undefined {
  const { pipeline, durability } = context;
  let persisted: readonly QueuedEvent[] | Promise<readonly QueuedEvent[]>;
  try {
    persisted = durability.persist(events);
  } catch (error) {
    pipeline.release(events.length, bytes);
    throw walRefusal(error);
  }
  if (!(persisted instanceof Promise)) {
    pipeline.release(events.length, bytes);
    return queueAll(context, persisted, bytes, waiters);
  }
  return persisted.then(
    (durable) => {
      pipeline.release(events.length, bytes);
      return queueAll(context, durable, bytes, waiters);
    },
    (error: unknown) => {
      pipeline.release(events.length, bytes);
      throw walRefusal(error);
    },
  );
}

function walRefusal(error: unknown): unknown {
  if (error instanceof WalFullError) return new IngestError('INGEST_ERR_WAL_FULL', error.message, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error });
  if (error instanceof WalFailedError) return new IngestError('INGEST_ERR_WAL_FAILED', undefined, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error });
  return error;
}

/**
 * Queue durable events, all or none. Nothing runs between the release of their reservation and
 * here: the room checked (and reserved) before is still there, and the queue is either open for
 * all of them or closed for all of them. A drain that began during the fsync still takes this
 * request (the drain waits for requests in flight).
 */
function queueAll(context: AcceptContext, durable: readonly QueuedEvent[], bytes: number, waiters: readonly Waiter[] | undefined): Promise<never> | undefined {
  const { pipeline, durability, admission } = context;
  if (!pipeline.hasRoomFor(durable.length, bytes)) return refuseWritten(durability, durable, 'INGEST_ERR_QUEUE_FULL', admission.retryAfterSeconds());
  const first = durable.length > 0 ? pipeline.enqueue(durable[0]!, waiters?.[0]) : { ok: true as const };
  if (!first.ok) {
    const code = first.reason === 'closed' ? 'INGEST_ERR_DRAINING' : 'INGEST_ERR_QUEUE_FULL';
    return refuseWritten(durability, durable, code, admission.retryAfterSeconds());
  }
  for (let index = 1; index < durable.length; index += 1) pipeline.enqueue(durable[index]!, waiters?.[index]);
  return undefined;
}

function refuseUnlessOpen(context: AcceptContext): void {
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
