import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { Clock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { IngestRuntime, type CloseReport, type RuntimeOptions } from '../../src/runtime.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { errorSerializers } from '../../src/telemetry/error-serializer.ts';

/** The real runtime, plus a close that also removes the scratch DATA_DIR it made. */
export interface TestService extends IngestRuntime {
  /** Drain and close everything within `deadlineMs` (default 10 s); reports what was left unstored. */
  close(deadlineMs?: number): Promise<CloseReport>;
}

/**
 * The real service on a real database, in this process: the same runtime server.ts starts
 * (so WAL mode by default, with DATA_DIR a fresh scratch directory unless one is given), configured
 * through the same environment schema. Not listening: tests drive it with app.inject or listen().
 */
export async function buildTestService(
  databaseUrl: string,
  environment: Record<string, string> = {},
  options: { clock?: Clock; wrapBaseSink?: (sink: Sink) => Sink; dataDir?: string; onFatal?: RuntimeOptions['onFatal'] } = {},
): Promise<TestService> {
  const config = loadConfig({
    BATCH_MAX_WAIT_MS: '20',
    LOG_LEVEL: 'silent',
    AUTH: 'off',
    // In-process tests read /metrics through app.inject on the one app.
    METRICS_ON_PUBLIC_LISTENER: 'true',
    DATA_DIR: options.dataDir ?? path.join(tmpdir(), `ingest-test-${randomUUID()}`),
    ...environment,
    DATABASE_URL: databaseUrl,
  });
  const runtime = await IngestRuntime.start({
    config,
    logger: pino({ level: config.logLevel, serializers: errorSerializers }),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.wrapBaseSink ? { wrapBaseSink: options.wrapBaseSink } : {}),
    ...(options.onFatal ? { onFatal: options.onFatal } : {}),
  });
  const close = runtime.close.bind(runtime);
  return Object.assign(runtime, {
    async close(deadlineMs = 10_000): Promise<CloseReport> {
      const report = await close(deadlineMs);
      if (!options.dataDir) await rm(config.dataDir, { recursive: true, force: true });
      return report;
    },
  });
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
