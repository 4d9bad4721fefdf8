import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

/** The obligation ledger across every round: each 2xx id must end up stored exactly once. */
const sent = new Set<string>();
const acknowledged = new Set<string>();

/** Load from `connections` workers until the server dies (connection errors end each worker). */
async function loadUntilDeath(server: ServerProcess, connections: number): Promise<void> {
  const client = new Pool(server.origin, { connections });
  let alive = true;
  void server.exited.then(() => (alive = false));
  const worker = async () => {
    while (alive) {
      const id = randomUUID();
      sent.add(id);
      try {
        const response = await client.request({
          path: '/events',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify([sampleEvent({ id, tenant: 'crash' })]),
        });
        await response.body.dump();
        if (response.statusCode === 202) acknowledged.add(id);
      } catch {
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await client.destroy();
}

describe('crash recovery with the write-ahead log', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-crash-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('loses no acknowledged event and stores none twice across SIGKILLs during appends, flushes and the drain', async (t) => {
    // Slow batches (the batch window and a small batch size) keep events in the queue and in
    // flight at the moment of each kill; the kill times are spread so every phase is hit.
    const environment = { DATABASE_URL: db.url, DATA_DIR: dataDir, BATCH_MAX_WAIT_MS: '50', BATCH_MAX_SIZE: '64' };
    const phases = ['under load', 'under load', 'under load', 'during the SIGTERM drain', 'under load', 'during the SIGTERM drain'];
    for (const [round, phase] of phases.entries()) {
      const server = await startServerProcess(environment);
      const load = loadUntilDeath(server, 16);
      const target = acknowledged.size + 300 + round * 97;
      await waitFor(() => acknowledged.size >= target, 20_000, `round ${round}: acknowledgements`);
      if (phase === 'during the SIGTERM drain') {
        server.child.kill('SIGTERM');
        await waitFor(() => server.logs.some((line) => line.includes('shutting down')), 5_000, 'the drain to begin');
      }
      server.child.kill('SIGKILL');
      await server.exited;
      await load;
      t.diagnostic(`round ${round} (${phase}): ${acknowledged.size} acknowledged so far`);
    }
    const final = await startServerProcess(environment);
    const replayed = final.logs.find((line) => line.includes('write-ahead log replayed'));
    assert.ok(replayed, 'the last start replayed the log');
    await waitFor(async () => {
      const metrics = await (await fetch(`${final.origin}/metrics`)).text();
      return /^ingest_queue_depth 0$/m.test(metrics);
    }, 20_000, 'the replay to be stored');
    final.child.kill('SIGTERM');
    assert.equal((await final.exited).code, 0);

    const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'crash'");
    const stored = new Set(rows.map((row) => row.id));
    assert.equal(stored.size, rows.length, 'no id stored twice');
    const lost = [...acknowledged].filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], 'every acknowledged event is stored');
    const unknown = [...stored].filter((id) => !sent.has(id));
    assert.deepEqual(unknown, [], 'nothing stored that was never sent');
    t.diagnostic(`${acknowledged.size} acknowledged, ${stored.size} stored (${stored.size - acknowledged.size} sent but unanswered when killed)`);
  });
});
