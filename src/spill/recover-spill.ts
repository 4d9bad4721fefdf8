import type { Logger } from 'pino';
import { outcomeWaiters } from '@audit-ingest/batcher';
import type { IngestPipeline } from '../ingest/pipeline.ts';
import { readSpillFiles, removeSpillFile } from './spill-file.ts';

/**
 * Re-ingest the spill files of an earlier shutdown. Each file is removed only after every event
 * in it was stored; one that could not be fully stored stays for the next start. Replays are
 * harmless: ids already stored are skipped by the sink.
 * Resolves once every file has been enqueued (not stored; it waits for room in a full queue):
 * the service can start listening.
 */
export async function recoverSpill(dataDir: string, pipeline: IngestPipeline, logger: Logger): Promise<number> {
  const files = await readSpillFiles(dataDir);
  let total = 0;
  for (const file of files) {
    const { waiters, outcomes } = outcomeWaiters(file.events.length);
    for (const [index, event] of file.events.entries()) await pipeline.enqueueWhenRoom(event, waiters[index]);
    void outcomes.then(async (settled) => {
      // Stored, or dead-lettered (fsynced in the DLQ): either way settled, and the file can go.
      if (!settled.every((outcome) => outcome === 'stored' || outcome === 'rejected')) {
        logger.error({ file: file.path }, 'some spilled events could not be stored; the spill file is kept and retried at the next start');
        return;
      }
      try {
        await removeSpillFile(file.path);
        logger.info({ file: file.path, events: file.events.length }, 'spill file re-ingested and removed');
      } catch (error) {
        logger.warn({ err: error, file: file.path }, 'could not remove a re-ingested spill file; it will be replayed harmlessly at the next start');
      }
    });
    total += file.events.length;
  }
  if (total > 0) logger.info({ events: total, files: files.length }, 're-ingesting events spilled at an earlier shutdown');
  return total;
}
