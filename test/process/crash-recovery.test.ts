import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';
import { scanSegment } from '../../src/wal/record-format.ts';

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
    // /metrics on the public listener too: the last start is watched through it.
    const environment = { DATABASE_URL: db.url, DATA_DIR: dataDir, BATCH_MAX_WAIT_MS: '50', BATCH_MAX_SIZE: '64', METRICS_ON_PUBLIC_LISTENER: 'true' };
    const phases = ['under load', 'under load', 'under load', 'during the SIGTERM drain', 'under load', 'during the SIGTERM drain'];
    // Starts that found acknowledged events in the log and replayed them (the log is replayed
    // before the service listens). The last kill can land after a drain emptied the log, so the
    // check is that kills left work to replay at all, not that the final start had some.
    let replays = 0;
    for (const [round, phase] of phases.entries()) {
      const server = await startServerProcess(environment);
      if (server.logs.some((line) => line.includes('write-ahead log replayed'))) replays += 1;
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
    if (final.logs.some((line) => line.includes('write-ahead log replayed'))) replays += 1;
    assert.ok(replays >= 3, `starts after a SIGKILL replayed the log (${replays} of ${phases.length} did)`);
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

describe('crash recovery never replays a refused event', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-crash-refused-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('bulks refused with 503 while the log is full are not stored after a SIGKILL and restart', async () => {
    // A 1 MiB log and ~3 KiB events, while the database is locked (nothing settles).
    const environment = { DATABASE_URL: db.url, DATA_DIR: dataDir, METRICS_ON_PUBLIC_LISTENER: 'true', WAL_MAX_BYTES: String(1024 * 1024), WAL_SEGMENT_BYTES: String(256 * 1024), QUEUE_CAPACITY: '100000' };
    const server = await startServerProcess(environment);
    const locker = await db.pool.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    const accepted = new Set<string>();
    const refused = new Set<string>();
    try {
      // 50 events fit; the next bulk of 400 (about 1.3 MiB) does not: the log fills part-way through it.
      for (const size of [50, 400]) {
        const ids = Array.from({ length: size }, () => randomUUID());
        const response = await fetch(`${server.origin}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(ids.map((id) => sampleEvent({ id, tenant: 'refused', metadata: { padding: 'p'.repeat(3000) } }))),
        });
        const body = (await response.json()) as { code?: string };
        if (response.status === 202) ids.forEach((id) => accepted.add(id));
        else {
          assert.equal(response.status, 503);
          assert.equal(body.code, 'INGEST_ERR_WAL_FULL');
          ids.forEach((id) => refused.add(id));
        }
      }
      assert.equal(accepted.size, 50);
      assert.equal(refused.size, 400);
      // Before the kill, let whatever the service appended reach the disk (what a crash a moment
      // later would find): the segment files hold every byte the log counts.
      await waitFor(async () => {
        const metrics = await (await fetch(`${server.origin}/metrics`)).text();
        const counted = Number(/^ingest_wal_bytes (\d+)$/m.exec(metrics)?.[1]);
        const walDirectory = path.join(dataDir, 'wal');
        const files = (await readdir(walDirectory)).filter((name) => name.endsWith('.wal'));
        // Records, not file sizes: a segment is zero-filled to its full size when it starts.
        const onDisk = (await Promise.all(files.map(async (name) => scanSegment(await readFile(path.join(walDirectory, name))).validBytes))).reduce((sum, size) => sum + size, 0);
        return onDisk === counted;
      }, 10_000, 'the log on disk to hold everything appended');
      server.child.kill('SIGKILL');
      await server.exited;
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    const restarted = await startServerProcess(environment);
    await waitFor(async () => (await db.count("tenant = 'refused'")) >= accepted.size, 20_000, 'the accepted bulks to be stored');
    // A clean drain stores whatever was replayed, refused records included if any were.
    restarted.child.kill('SIGTERM');
    assert.equal((await restarted.exited).code, 0);
    const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'refused'");
    const stored = new Set(rows.map((row) => row.id));
    assert.deepEqual([...accepted].filter((id) => !stored.has(id)), [], 'every acknowledged event is stored');
    assert.deepEqual([...refused].filter((id) => stored.has(id)), [], 'no refused event is stored');
  });
});
