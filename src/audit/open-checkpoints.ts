import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { ConfigError, type Config } from '../config.ts';
import type { IngestMetrics } from '../telemetry/metrics.ts';
import type { CheckpointDestination } from './checkpoint-destination.ts';
import { FileCheckpointDestination } from './checkpoint-file.ts';
import { CheckpointOutbox, OUTBOX_FILE_NAME } from './checkpoint-outbox.ts';
import { redacted, WebhookCheckpointDestination, type WebhookObserver } from './checkpoint-webhook.ts';
import { CheckpointWriter } from './checkpoint-writer.ts';
import { loadSigningKey } from './checkpoints.ts';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * AUDIT_CHAIN=on with a signing key and AUDIT_CHECKPOINT_FILE and/or AUDIT_CHECKPOINT_WEBHOOK_URL:
 * the checkpoint writer with its destinations, counted in the service's metrics. Undefined when
 * checkpoints are not configured (config.ts refuses a destination without a key or the chain).
 */
export async function openCheckpoints(config: Config, clock: Clock, logger: Logger, metrics: IngestMetrics): Promise<CheckpointWriter | undefined> {
  const { audit } = config;
  if (!audit.chain || audit.signingKey === undefined || (audit.checkpointFile === undefined && audit.checkpointWebhook === undefined)) return undefined;
  const key = await loadSigningKey(audit.signingKey).catch((error: unknown) => {
    throw new ConfigError(`cannot load the audit signing key: ${(error as Error).message}`, { cause: error });
  });
  // The callbacks run only after the writer below exists (a destination reports what it exported).
  const observer: WebhookObserver = {
    exported: (destination, result) => {
      metrics.auditCheckpointWrites.inc({ destination, result });
      metrics.auditUnsignedEvents.set(writer.unsignedEvents);
    },
    superseded: (destination, lines) => metrics.auditCheckpointsSuperseded.inc({ destination }, lines),
    refused: () => metrics.auditCheckpointWebhookRefusals.inc(),
    outboxWritten: (lines) => metrics.auditCheckpointOutboxLines.set(lines),
    outboxFailed: () => metrics.auditCheckpointOutboxFailures.inc({ reason: 'write' }),
  };
  const destinations: CheckpointDestination[] = [];
  if (audit.checkpointFile !== undefined) {
    const file = audit.checkpointFile;
    destinations.push(
      await FileCheckpointDestination.open({ file, logger, observer }).catch((error: unknown) => {
        throw new ConfigError(`cannot open AUDIT_CHECKPOINT_FILE ${file}: ${(error as Error).message}`, { cause: error });
      }),
    );
  }
  const webhook = audit.checkpointWebhook;
  if (webhook !== undefined) {
    const url = new URL(webhook.url);
    if (url.protocol === 'http:' && webhook.token !== undefined && !LOOPBACK.has(url.hostname)) {
      logger.warn({ url: url.origin }, 'AUDIT_CHECKPOINT_WEBHOOK_TOKEN is sent over plain http to a host that is not loopback: use https');
    }
    // DATA_DIR/audit-checkpoints-outbox.ndjson: what an earlier run could not deliver (DATA_DIR is locked: ours alone).
    const outboxFile = path.join(config.dataDir, OUTBOX_FILE_NAME);
    const { outbox, contents } = await CheckpointOutbox.open(outboxFile, key, new Date(clock.now())).catch((error: unknown) => {
      throw new ConfigError(`cannot open the audit checkpoint outbox ${outboxFile}: ${(error as Error).message}`, { cause: error });
    });
    if (contents.corrupt !== undefined) {
      metrics.auditCheckpointOutboxFailures.inc({ reason: 'corrupt' });
      logger.error(
        { outbox: outboxFile, reason: contents.corrupt.reason, setAsideAs: contents.corrupt.setAsideAs, kept: contents.lines.length },
        contents.corrupt.setAsideAs === undefined
          ? 'the audit checkpoint outbox is corrupt and could not be set aside; starting anyway with its good lines. Move the file away by hand before it is overwritten if it is evidence; the next checkpoint of each tenant covers what it held'
          : 'the audit checkpoint outbox is corrupt; it was set aside and the service starts anyway, delivering its good lines. Keep the set-aside file with the evidence; the next checkpoint of each tenant covers what it held',
      );
    }
    metrics.auditCheckpointOutboxLines.set(outbox.lines);
    if (contents.lines.length > 0) {
      logger.info({ outbox: outboxFile, lines: contents.lines.length }, 'signed audit checkpoints an earlier run did not deliver to AUDIT_CHECKPOINT_WEBHOOK_URL are sent first');
    }
    destinations.push(
      new WebhookCheckpointDestination({
        outbox: { file: outbox, restored: contents.lines },
        url: webhook.url,
        token: webhook.token,
        timeoutMs: webhook.timeoutMs,
        retryBaseDelayMs: Math.min(500, webhook.retryMaxDelayMs),
        retryMaxDelayMs: webhook.retryMaxDelayMs,
        logger,
        observer,
      }),
    );
  }
  const writer = new CheckpointWriter({ key, clock, everyEvents: audit.checkpointEvents, intervalMs: audit.checkpointIntervalMs, destinations });
  logger.info(
    { file: audit.checkpointFile, webhook: webhook === undefined ? undefined : redacted(webhook.url), keyId: writer.keyId },
    'AUDIT_CHAIN=on: signed checkpoints of the chain heads are exported (AUDIT_CHECKPOINT_FILE, AUDIT_CHECKPOINT_WEBHOOK_URL)',
  );
  return writer;
}
