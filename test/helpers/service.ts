import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { systemClock, type Clock } from '../../src/clock.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { createIngestService, type IngestService } from '../../src/ingest-service.ts';
import type { QueuedEvent, Sink } from '../../src/sink/sink.ts';
import { createMetrics, type IngestMetrics } from '../../src/telemetry/metrics.ts';

export interface TestService extends IngestService {
  readonly metrics: IngestMetrics;
  readonly config: Config;
  /** Drain and close everything; resolves with the events that could not be stored in time. */
  close(deadlineMs?: number): Promise<readonly QueuedEvent[]>;
}

/** The real app on a real database, in this process, configured through the same env schema. */
export function buildTestService(
  databaseUrl: string,
  environment: Record<string, string> = {},
  options: { clock?: Clock; wrapBaseSink?: (sink: Sink) => Sink; dataDir?: string } = {},
): TestService {
  const config = loadConfig({
    BATCH_MAX_WAIT_MS: '20',
    LOG_LEVEL: 'silent',
    AUTH: 'off',
    DATA_DIR: options.dataDir ?? path.join(tmpdir(), `ingest-test-${randomUUID()}`),
    ...environment,
  });
  const logger = pino({ level: config.logLevel });
  const clock = options.clock ?? systemClock;
  const pool = createPool(databaseUrl, config.db, logger);
  const metrics = createMetrics();
  const service = createIngestService({
    config,
    pool,
    clock,
    logger,
    metrics,
    ...(options.wrapBaseSink ? { wrapBaseSink: options.wrapBaseSink } : {}),
  });
  return {
    ...service,
    metrics,
    config,
    async close(deadlineMs = 10_000) {
      service.pipeline.beginDrain();
      await service.app.close();
      const unstored = await service.pipeline.shutdown(deadlineMs);
      await service.deadLetterQueue.close();
      await pool.end();
      if (!options.dataDir) await rm(config.dataDir, { recursive: true, force: true });
      return unstored;
    },
  };
}

/** Wait until `condition` holds, polling; fails after `timeoutMs`. A condition wait, not a sleep. */
export async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

let sequence = 0;
/** A valid event; each call differs (actor id) unless `fields` say otherwise. */
export function sampleEvent(fields: Record<string, unknown> = {}): Record<string, unknown> {
  sequence += 1;
  return {
    tenant: 'acme',
    occurred_at: '2026-11-22T05:00:00.000Z',
    action: 'document.update',
    actor: { id: `user:${sequence}`, type: 'user', name: 'Ada' },
    target: { id: 'doc:9', type: 'document', name: 'Q3 plan' },
    outcome: 'success',
    source_ip: '203.0.113.7',
    user_agent: 'billing-service/2.3',
    metadata: { request_id: `r-${sequence}` },
    ...fields,
  };
}
