import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent } from '../helpers/service.ts';

/** Bytes in the write-ahead log's segments under `dataDir` (0 when there are none). */
async function walBytes(dataDir: string): Promise<number> {
  const directory = path.join(dataDir, 'wal');
  let names: string[];
  try {
    names = (await readdir(directory)).filter((name) => name.endsWith('.wal'));
  } catch {
    return 0;
  }
  let bytes = 0;
  for (const name of names) bytes += (await stat(path.join(directory, name))).size;
  return bytes;
}

/**
 * ACK_MODE=committed: a 201 follows the COMMIT, so the write-ahead log would only add an fsync to
 * every answer. With DURABILITY=wal (the default) nothing new is written to it; with ACK_MODE=queued
 * the same requests are logged (the contrast that shows the check can fail).
 */
describe('ACK_MODE=committed writes no write-ahead log', () => {
  let db: TestDatabase;
  const dataDirs: string[] = [];
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
    await Promise.all(dataDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  for (const ackMode of ['committed', 'queued'] as const) {
    it(`ACK_MODE=${ackMode}: ${ackMode === 'committed' ? 'every 201 is committed and the log stays empty' : 'the same events are logged before their 202'}`, async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), `ingest-ack-${ackMode}-`));
      dataDirs.push(dataDir);
      const service = await buildTestService(db.url, { ACK_MODE: ackMode, DURABILITY: 'wal' }, { dataDir });
      let bytesWhileRunning: number;
      try {
        const tenant = `ack-${ackMode}`;
        for (let i = 0; i < 5; i += 1) {
          const event = sampleEvent({ id: randomUUID(), tenant });
          const response = await service.app.inject({ method: 'POST', url: '/event', payload: event });
          assert.equal(response.statusCode, ackMode === 'committed' ? 201 : 202);
          if (ackMode === 'committed') assert.equal(await db.count(`id = '${String(event.id)}'`), 1, 'committed before the 201');
        }
        bytesWhileRunning = await walBytes(dataDir);
      } finally {
        await service.close();
      }
      if (ackMode === 'committed') assert.equal(bytesWhileRunning, 0, 'no write-ahead-log record for a committed-mode event');
      else assert.ok(bytesWhileRunning > 0, 'queued mode logs its events');
    });
  }
});
