import { readdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { IngestMetrics } from '../telemetry/metrics.ts';
import { memoryDurability, ReplayOnlyDurability, WalDurability, type Durability } from './durability.ts';
import type { WalFailedError } from './errors.ts';
import { recoverWal, type RecoveredRecord, type Recovery } from './recover.ts';
import { SEGMENT_SUFFIX } from './segment-files.ts';
import { WriteAheadLog } from './write-ahead-log.ts';

export interface OpenedDurability {
  readonly durability: Durability;
  /** Records of the previous run to replay before taking traffic. */
  readonly recovered: readonly RecoveredRecord[];
  close(): Promise<void>;
}

/**
 * Recover the write-ahead log (DURABILITY=wal) and open it for appending; or memory mode. In
 * memory mode a log left by an earlier DURABILITY=wal run is recovered and replayed too (its
 * events were acknowledged), and deleted once they are stored; nothing new is written to it.
 *
 * ACK_MODE=committed writes nothing new to the log either, whatever DURABILITY says: its answer
 * (201) is sent only after the event's COMMIT, so a crash before it loses nothing acknowledged,
 * and the log's fsync would only add a disk sync to every 201 (it was the tail of committed-mode
 * latency at a trickle: two syncs in a row, the log's and PostgreSQL's).
 */
export async function openDurability(
  config: Pick<Config, 'durability'> & Partial<Pick<Config, 'ackMode'>>,
  metrics: IngestMetrics,
  logger: Logger,
  onFatal: (error: WalFailedError) => void,
): Promise<OpenedDurability> {
  const { directory } = config.durability;
  if (config.durability.mode === 'memory' || config.ackMode === 'committed') {
    if (config.durability.mode === 'memory') {
      logger.warn('DURABILITY=memory: a 202 means the event is in this process only; a crash loses up to QUEUE_CAPACITY acknowledged events');
    } else {
      logger.info('ACK_MODE=committed: every 201 follows its COMMIT, so new events are not written to the write-ahead log (it would add an fsync and nothing a 201 promises); a log left by an earlier run is still replayed');
    }
    if (!(await holdsSegments(directory))) return { durability: memoryDurability, recovered: [], close: async () => {} };
    const recovery = await recoverWal(directory);
    reportRecovery(recovery, metrics, logger);
    if (recovery.segments.length === 0) return { durability: memoryDurability, recovered: [], close: async () => {} };
    logger.warn(
      { directory, segments: recovery.segments.length, events: recovery.records.length },
      'new events are not logged (DURABILITY=memory or ACK_MODE=committed), but DATA_DIR/wal holds the write-ahead log of an earlier run: its events were acknowledged, so they are replayed now and the log is deleted once they are stored. Nothing new is written to it',
    );
    const wal = await openLog(config, metrics, logger, onFatal, recovery);
    return { durability: new ReplayOnlyDurability(wal), recovered: recovery.records, close: () => wal.close() };
  }
  const recovery = await recoverWal(directory);
  reportRecovery(recovery, metrics, logger);
  const wal = await openLog(config, metrics, logger, onFatal, recovery);
  return { durability: new WalDurability(wal), recovered: recovery.records, close: () => wal.close() };
}

async function holdsSegments(directory: string): Promise<boolean> {
  try {
    return (await readdir(directory)).some((name) => name.endsWith(SEGMENT_SUFFIX));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

function reportRecovery(recovery: Recovery, metrics: IngestMetrics, logger: Logger): void {
  if (recovery.tornTails > 0) {
    metrics.walTornTails.inc(recovery.tornTails);
    logger.warn({ tornTails: recovery.tornTails }, 'the write-ahead log ended in a record cut short by a crash; it was never acknowledged and was truncated');
  }
  for (const range of recovery.quarantined) {
    metrics.walQuarantined.inc();
    logger.error(
      { file: range.file, bytes: range.bytes },
      'a corrupt write-ahead-log range was skipped and kept for inspection; the events in it (if any) are lost. Check the disk (dmesg, SMART) and keep the file for the post-mortem',
    );
  }
  if (recovery.cancelled > 0) {
    logger.info({ events: recovery.cancelled }, 'write-ahead-log records of refused requests (answered 503) were withdrawn and are not replayed');
  }
}

async function openLog(
  config: Pick<Config, 'durability'>,
  metrics: IngestMetrics,
  logger: Logger,
  onFatal: (error: WalFailedError) => void,
  recovery: Recovery,
): Promise<WriteAheadLog> {
  const { directory, maxBytes, segmentBytes } = config.durability;
  const wal = await WriteAheadLog.open(
    {
      directory,
      segmentMaxBytes: segmentBytes,
      maxBytes,
      now: () => performance.now(),
      onGroupCommit: (durationMs, records) => {
        metrics.walFsyncDuration.observe(durationMs / 1000);
        metrics.walGroupSize.observe(records);
      },
      onFatal,
      onHousekeepingFailed: (error, file, action) => {
        metrics.walHousekeepingFailures.inc({ action });
        logger.error(
          { file, action, code: (error as NodeJS.ErrnoException).code, error: String(error) },
          action === 'remove'
            ? 'a settled write-ahead-log segment could not be deleted; it still counts toward WAL_MAX_BYTES and is tried again at the next settle. Check the permissions and the disk of DATA_DIR/wal'
            : 'the write-ahead log could not start a new segment to free a settled one; it keeps appending to the current one and tries again. Check the permissions and the disk of DATA_DIR/wal',
        );
      },
    },
    recovery.segments,
    recovery.nextSeq,
  );
  metrics.setWalSource(() => ({ bytes: wal.bytes, segments: wal.segments }));
  return wal;
}
