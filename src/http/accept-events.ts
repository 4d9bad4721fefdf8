import type { Waiter } from '../batcher/batcher.ts';
import { IngestError } from '../errors.ts';
import type { QueuedEvent } from '../sink/sink.ts';
import { WalFatalError, WalFullError } from '../wal/errors.ts';
import type { IngestContext } from './ingest-context.ts';

const WAL_RETRY_AFTER_SECONDS = 5;

/**
 * Make validated events durable (per DURABILITY), then queue all of them or none. Resolves once
 * they may be acknowledged; throws the IngestError to answer otherwise. Events made durable but
 * not queued are released from the log at once (they were not acknowledged).
 */
export async function acceptEvents(
  context: Pick<IngestContext, 'pipeline' | 'durability' | 'admission'>,
  events: readonly QueuedEvent[],
  waiters?: readonly Waiter[],
): Promise<void> {
  const { pipeline, durability, admission } = context;
  const refusing = durability.refusing;
  if (refusing) throw new IngestError('INGEST_ERR_WAL_FULL', `the write-ahead log refuses new events (${refusing}); nothing was acknowledged`, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS });
  let durable: readonly QueuedEvent[];
  try {
    durable = await durability.persist(events);
  } catch (error) {
    if (error instanceof WalFullError) throw new IngestError('INGEST_ERR_WAL_FULL', error.message, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error });
    if (error instanceof WalFatalError) throw new IngestError('INGEST_ERR_WAL_FAILED', undefined, { retryAfterSeconds: WAL_RETRY_AFTER_SECONDS, cause: error });
    throw error;
  }
  const bytes = durable.reduce((sum, event) => sum + event.bytes, 0);
  if (pipeline.draining || !pipeline.hasRoomFor(durable.length, bytes)) {
    durability.settle(durable);
    const code = pipeline.draining ? 'INGEST_ERR_DRAINING' : 'INGEST_ERR_QUEUE_FULL';
    throw new IngestError(code, undefined, { retryAfterSeconds: admission.retryAfterSeconds() });
  }
  // Nothing runs between the room check and these enqueues, so none is refused.
  durable.forEach((event, index) => pipeline.enqueue(event, waiters?.[index]));
}

