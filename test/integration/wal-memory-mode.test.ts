import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { systemClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { prepareEvent } from '../../src/http/prepare-event.ts';
import { createIngestService } from '../../src/ingest-service.ts';
import { createMetrics } from '../../src/telemetry/metrics.ts';
import { openDurability } from '../../src/wal/open-durability.ts';
import { replayRecovered } from '../../src/wal/replay.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

function capturingLogger(): { logger: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { level: number; msg: string });
      callback();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('DURABILITY=memory over a write-ahead log left by DURABILITY=wal', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-wal-to-memory-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('replays the unsettled events, says so at warn, and deletes the log once they are stored', async () => {
    const walDirectory = path.join(dataDir, 'wal');
    // A DURABILITY=wal run acknowledges three events and stops before storing them.
    const walConfig = loadConfig({ DATA_DIR: dataDir, DURABILITY: 'wal' });
    const ids = ['0194a1b0-0000-7000-8000-00000000a001', '0194a1b0-0000-7000-8000-00000000a002', '0194a1b0-0000-7000-8000-00000000a003'];
    const events = ids.map((id) => {
      const prepared = prepareEvent(sampleEvent({ id, tenant: 'switched' }), new Date().toISOString());
      assert.ok(prepared.ok);
      return prepared.event;
    });
    const walRun = await openDurability(walConfig, createMetrics(), pino({ level: 'silent' }), () => {});
    await walRun.durability.persist(events);
    await walRun.close();
    const leftBehind = (await readdir(walDirectory)).filter((name) => name.endsWith('.wal'));
    assert.ok(leftBehind.length > 0);

    // The operator switches to DURABILITY=memory.
    const config = loadConfig({ DATA_DIR: dataDir, DURABILITY: 'memory', BATCH_MAX_WAIT_MS: '10', DATABASE_URL: db.url });
    const { logger, lines } = capturingLogger();
    const metrics = createMetrics();
    const opened = await openDurability(config, metrics, logger, () => {});
    assert.equal(opened.durability.mode, 'memory');
    assert.equal(opened.recovered.length, 3, 'the unsettled events are recovered');
    const warning = lines.find((line) => line.level === 40 && /DURABILITY=memory/.test(line.msg) && /write-ahead log/.test(line.msg) && /replay/.test(line.msg));
    assert.ok(warning, `a warning says the log is replayed: ${JSON.stringify(lines)}`);

    const pool = createPool(db.url, config.db, logger);
    const service = createIngestService({ config, pool, clock: systemClock, logger, metrics, durability: opened.durability });
    try {
      await replayRecovered(opened.recovered, service.pipeline, metrics, logger);
      await waitFor(async () => (await db.count("tenant = 'switched'")) === 3, 10_000, 'the replayed events to be stored');
      await waitFor(async () => (await readdir(walDirectory)).filter((name) => leftBehind.includes(name)).length === 0, 10_000, 'the old segments to be deleted');
    } finally {
      service.pipeline.beginDrain();
      await service.app.close();
      await service.pipeline.shutdown(5_000);
      await service.deadLetterQueue.close();
      await pool.end();
      await opened.close();
    }
    assert.deepEqual((await readdir(walDirectory)).filter((name) => name.endsWith('.wal')), [], 'nothing is left to replay');
  });
});
