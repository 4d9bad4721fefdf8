import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import type { IngestMetrics } from '../telemetry/metrics.ts';
import { memoryDurability, WalDurability, type Durability } from './durability.ts';
import type { WalFatalError } from './errors.ts';
import { recoverWal, type RecoveredRecord } from './recover.ts';
import { WriteAheadLog } from './write-ahead-log.ts';

export interface OpenedDurability {
  readonly durability: Durability;
  /** Records of the previous run to replay before taking traffic. */
  readonly recovered: readonly RecoveredRecord[];
  close(): Promise<void>;
}

/** Recover the write-ahead log (DURABILITY=wal) and open it for appending; or memory mode. */
export async function openDurability(
  config: Pick<Config, 'durability'>,
  metrics: IngestMetrics,
  logger: Logger,
  onFatal: (error: WalFatalError) => void,
): Promise<OpenedDurability> {
  if (config.durability.mode === 'memory') {
    logger.warn('DURABILITY=memory: a 202 means the event is in this process only; a crash loses up to QUEUE_CAPACITY acknowledged events');
    return { durability: memoryDurability, recovered: [], close: async () => {} };
  }
  const { directory, maxBytes, segmentBytes } = config.durability;
  const recovery = await recoverWal(directory);
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
    },
    recovery.segments,
    recovery.nextSeq,
  );
  metrics.setWalSource(() => ({ bytes: wal.bytes, segments: wal.segments }));
  return { durability: new WalDurability(wal), recovered: recovery.records, close: () => wal.close() };
}
