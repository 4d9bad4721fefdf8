import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { openDurability } from '../../src/wal/open-durability.ts';
import { queuedEvent } from '../helpers/events.ts';
import { waitFor } from '../helpers/service.ts';

describe('write-ahead-log housekeeping failures', () => {
  it('are counted in ingest_wal_housekeeping_failures_total{action="remove"}, not only logged', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-wal-housekeeping-'));
    const config = loadConfig({ DATA_DIR: dataDir, WAL_SEGMENT_BYTES: String(64 * 1024), WAL_MAX_BYTES: String(1024 * 1024) });
    const metrics = createMetrics();
    const opened = await openDurability(config, metrics, pino({ level: 'silent' }), () => {});
    const walDirectory = config.durability.directory;
    const segments = async () => (await readdir(walDirectory)).filter((name) => name.endsWith('.wal')).sort();
    const value = async () => (await metrics.registry.getSingleMetricAsString('ingest_wal_housekeeping_failures_total')).match(/action="remove"} (\d+)/)?.[1];
    try {
      assert.equal(await value(), '0', 'the series exists from the start');
      const persisted: QueuedEvent[] = [];
      while ((await segments()).length < 2) persisted.push(...(await opened.durability.persist([queuedEvent({ tenant: 'housekeeping' })])));
      const [oldest, current] = await segments();
      const firstOfCurrent = Number(current!.slice(0, -'.wal'.length));
      // The oldest segment's file becomes a non-empty directory: its removal fails, even as root.
      const blocked = path.join(walDirectory, oldest!);
      await rm(blocked);
      await mkdir(blocked);
      await writeFile(path.join(blocked, 'in-the-way'), 'x');
      opened.durability.settle(persisted.filter((event) => event.walSeq! < firstOfCurrent));
      await waitFor(async () => (await value()) === '1', 5_000, 'the failed removal to be counted');
      await rm(blocked, { recursive: true });
    } finally {
      await opened.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
