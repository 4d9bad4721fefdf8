import type { Logger } from 'pino';
import type { IngestPipeline } from '../ingest/pipeline.ts';
import { readSpillFiles, removeSpillFile } from './spill-file.ts';

/**
 * Re-ingest the spill files of an earlier shutdown. Each file is removed only after every event
 * in it was stored; one that could not be fully stored stays for the next start. Replays are
 * harmless: ids already stored are skipped by the sink.
 * Resolves once every file has been enqueued (not stored): the service can start listening.
 */
export async function recoverSpill(dataDir: string, pipeline: IngestPipeline, logger: Logger): Promise<number> {
  const files = await readSpillFiles(dataDir);
  let total = 0;
  for (const file of files) {
    let remaining = file.events.length;
    let allStored = true;
    const settle = (outcome: string) => {
      if (outcome !== 'stored') allStored = false;
      remaining -= 1;
      if (remaining > 0) return;
      if (!allStored) {
        logger.error({ file: file.path }, 'some spilled events could not be stored; the spill file is kept and retried at the next start');
        return;
      }
      removeSpillFile(file.path).then(
        () => logger.info({ file: file.path, events: file.events.length }, 'spill file re-ingested and removed'),
        (error: unknown) => logger.warn({ err: error, file: file.path }, 'could not remove a re-ingested spill file; it will be replayed harmlessly at the next start'),
      );
    };
    for (const event of file.events) {
      const result = pipeline.enqueue(event, settle);
      if (!result.ok) {
        allStored = false;
        remaining -= 1;
        logger.error({ file: file.path }, 'the queue had no room for spilled events; the spill file is kept for the next start. Raise QUEUE_CAPACITY if this repeats');
      }
    }
    if (remaining === 0 && file.events.length === 0) await removeSpillFile(file.path);
    total += file.events.length;
  }
  if (total > 0) logger.info({ events: total, files: files.length }, 're-ingesting events spilled at an earlier shutdown');
  return total;
}
