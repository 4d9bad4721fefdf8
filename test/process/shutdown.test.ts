import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

/** The obligation ledger: what was sent, and what was acknowledged with a 2xx. */
interface Ledger {
  readonly sent: Set<string>;
  readonly acknowledged: Set<string>;
  readonly statuses: Map<number, number>;
}

/**
 * Send events from `connections` workers until `stop()` returns true or `limit` are sent. Each
 * event carries its own id, so the ledger can be checked against the table. Connection errors
 * (the server going away) end a worker.
 */
async function sendUntil(origin: string, connections: number, limit: number, stop: () => boolean, tenant: string): Promise<Ledger> {
  const client = new Pool(origin, { connections });
  const ledger: Ledger = { sent: new Set(), acknowledged: new Set(), statuses: new Map() };
  const worker = async () => {
    while (!stop() && ledger.sent.size < limit) {
      const id = randomUUID();
      ledger.sent.add(id);
      try {
        const response = await client.request({
          path: '/event',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(sampleEvent({ id, tenant })),
        });
        await response.body.dump();
        ledger.statuses.set(response.statusCode, (ledger.statuses.get(response.statusCode) ?? 0) + 1);
        if (response.statusCode >= 200 && response.statusCode < 300) ledger.acknowledged.add(id);
        if (response.statusCode === 503) return;
      } catch {
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await client.destroy();
  return ledger;
}

async function storedIds(db: TestDatabase, tenant: string): Promise<Set<string>> {
  const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM events WHERE tenant = $1', [tenant]);
  return new Set(rows.map((row) => row.id));
}

function assertLedger(ledger: Ledger, stored: Set<string>): void {
  const lost = [...ledger.acknowledged].filter((id) => !stored.has(id));
  assert.deepEqual(lost, [], 'every acknowledged event is stored');
  const unknown = [...stored].filter((id) => !ledger.sent.has(id));
  assert.deepEqual(unknown, [], 'nothing is stored that was never sent');
}

describe('the server process under SIGTERM', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-process-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('drains under load and exits 0 before the deadline, with every acknowledged event stored', async () => {
    const server = await startServerProcess({ DATABASE_URL: db.url, DATA_DIR: dataDir, SHUTDOWN_TIMEOUT_MS: '10000' });
    let signalledAtMs = 0;
    const load = sendUntil(server.origin, 32, 20_000, () => false, 'sigterm');
    await waitFor(async () => (await db.count("tenant = 'sigterm'")) >= 2000, 20_000, 'load to be flowing');
    signalledAtMs = Date.now();
    server.child.kill('SIGTERM');
    const { code } = await server.exited;
    const shutdownMs = Date.now() - signalledAtMs;
    const ledger = await load;
    assert.equal(code, 0, server.logs.slice(-5).join('\n'));
    assert.ok(shutdownMs < 10_000, `shut down in ${shutdownMs} ms`);
    assert.ok(ledger.acknowledged.size >= 2000);
    assertLedger(ledger, await storedIds(db, 'sigterm'));
    assert.ok(server.logs.some((line) => line.includes('"msg":"shutdown complete"')));
  });

  it('with DURABILITY=memory, spills what the deadline leaves unstored, exits non-zero, and stores it on the next start', async () => {
    const server = await startServerProcess({
      DURABILITY: 'memory',
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      SHUTDOWN_TIMEOUT_MS: '1500',
      DB_STATEMENT_TIMEOUT_MS: '60000',
      DB_COPY_TIMEOUT_MS: '60000',
    });
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
      const ledger = await sendUntil(server.origin, 8, 300, () => false, 'spill');
      assert.equal(ledger.acknowledged.size, 300);
      server.child.kill('SIGTERM');
      const { code } = await server.exited;
      assert.equal(code, 3, 'exit code 3 says events were spilled');
      const spillFiles = (await readdir(path.join(dataDir, 'spill'))).filter((name) => name.endsWith('.spill'));
      assert.equal(spillFiles.length, 1);
      const spilled = (await readFile(path.join(dataDir, 'spill', spillFiles[0]!), 'utf8')).trim().split('\n');
      assert.equal(spilled.length, 300);
      await locker.query('ROLLBACK');

      const restarted = await startServerProcess({ DURABILITY: 'memory', DATABASE_URL: db.url, DATA_DIR: dataDir });
      await waitFor(async () => (await db.count("tenant = 'spill'")) === 300, 20_000, 'the spilled events to be stored');
      await waitFor(async () => (await readdir(path.join(dataDir, 'spill'))).length === 0, 5_000, 'the spill file to be removed');
      restarted.child.kill('SIGTERM');
      assert.equal((await restarted.exited).code, 0);
      assertLedger(ledger, await storedIds(db, 'spill'));
    } finally {
      locker.release();
    }
  });

  it('with the write-ahead log, leaves what the deadline leaves unstored in the log, and stores it on the next start', async () => {
    const walDataDir = await mkdtemp(path.join(tmpdir(), 'ingest-process-wal-'));
    const environment = { DATABASE_URL: db.url, DATA_DIR: walDataDir, SHUTDOWN_TIMEOUT_MS: '1500', DB_STATEMENT_TIMEOUT_MS: '60000', DB_COPY_TIMEOUT_MS: '60000' };
    const server = await startServerProcess(environment);
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
      const ledger = await sendUntil(server.origin, 8, 200, () => false, 'wal-drain');
      assert.equal(ledger.acknowledged.size, 200);
      server.child.kill('SIGTERM');
      assert.equal((await server.exited).code, 3);
      assert.ok(server.logs.some((line) => line.includes('they stay in the write-ahead log')));
      await locker.query('ROLLBACK');
      const restarted = await startServerProcess(environment);
      await waitFor(async () => (await db.count("tenant = 'wal-drain'")) === 200, 20_000, 'the logged events to be stored');
      restarted.child.kill('SIGTERM');
      assert.equal((await restarted.exited).code, 0);
      assertLedger(ledger, await storedIds(db, 'wal-drain'));
    } finally {
      locker.release();
      await rm(walDataDir, { recursive: true, force: true });
    }
  });

  it('refuses to start on a bad configuration value, naming the variable', async () => {
    await assert.rejects(startServerProcess({ DATABASE_URL: db.url, QUEUE_CAPACITY: 'lots' }), /QUEUE_CAPACITY: .*number/);
  });
});
