import type { Logger } from 'pino';
import { queuedEventFromRow } from '../event/queued-event.ts';
import type { IngestPipeline } from '../ingest/pipeline.ts';
import type { IngestMetrics } from '../telemetry/metrics.ts';
import type { RecoveredRecord } from './recover.ts';

/**
 * Put the previous run's log records back through the batcher, oldest first, waiting for room
 * when the queue is full. Resolves once every record is queued: then the service may take
 * traffic. Records already stored come back as duplicates, which the sink skips.
 */
export async function replayRecovered(records: readonly RecoveredRecord[], pipeline: IngestPipeline, metrics: IngestMetrics, logger: Logger): Promise<void> {
  if (records.length === 0) return;
  logger.info({ events: records.length }, 'replaying the write-ahead log of the previous run before taking traffic');
  for (const record of records) {
    const row = record.payload.toString('utf8');
    await pipeline.enqueueWhenRoom(queuedEventFromRow(row, { bytes: record.payload.length, walSeq: record.seq }));
  }
  metrics.walReplayed.inc(records.length);
  logger.info({ events: records.length }, 'write-ahead log replayed');
}
