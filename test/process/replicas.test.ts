import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';
import { MIGRATIONS_DIR } from '../../src/db/migrate.ts';

const REPLICAS = 3;
const TENANT = 'replicas';

/** One replica's slot: its DATA_DIR survives its processes; its ledger is per replica. */
interface Replica {
  readonly dataDir: string;
  server: ServerProcess;
  readonly acknowledged: Set<string>;
  /** Answers other than 202 and connection errors, counted only while the replica was meant to be up. */
  failures: string[];
  /** Set just before the test SIGKILLs it: connection errors from then on are the kill's. */
  dying: boolean;
}

const sent = new Set<string>();

/**
 * Load one replica from `connections` workers until `stop()` says so or its process dies (a
 * connection error after the death ends a worker). Each id is recorded before it is sent; only
 * 202-answered ids enter the replica's ledger.
 */
function load(replica: Replica, connections: number, stop: () => boolean): Promise<void> {
  const { server } = replica;
  const client = new Pool(server.origin, { connections });
  let alive = true;
  void server.exited.then(() => (alive = false));
  const worker = async () => {
    while (alive && !stop()) {
      const id = randomUUID();
      sent.add(id);
      try {
        const response = await client.request({
          path: '/events',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify([sampleEvent({ id, tenant: TENANT })]),
        });
        await response.body.dump();
        if (response.statusCode === 202) replica.acknowledged.add(id);
        else replica.failures.push(`status ${response.statusCode}`);
      } catch (error) {
        if (!replica.dying) replica.failures.push(`error ${(error as Error).message}`);
        return;
      }
    }
  };
  return Promise.all(Array.from({ length: connections }, worker)).then(() => client.destroy());
}

async function queueEmpty(server: ServerProcess): Promise<boolean> {
  const metrics = await (await fetch(`${server.origin}/metrics`)).text();
  return /^ingest_queue_depth 0$/m.test(metrics);
}

describe('replicas: several service processes on one PostgreSQL', () => {
  let db: TestDatabase;
  const dataDirs: string[] = [];
  before(async () => {
    // A fresh, unmigrated database: the replicas race to migrate it.
    db = await createTestDatabase({ migrate: false });
    for (let i = 0; i < REPLICAS; i += 1) dataDirs.push(await mkdtemp(path.join(tmpdir(), `ingest-replica-${i}-`)));
  });
  after(async () => {
    await db.drop();
    await Promise.all(dataDirs.map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('start at once on a fresh database (migrated once), keep answering 202 when one is SIGKILLed under load, and store every acknowledged id exactly once after it restarts on its DATA_DIR', async (t) => {
    // Slow batches keep events queued and in flight when the replica is killed.
    const environment = (dataDir: string) => ({ DATABASE_URL: db.url, DATA_DIR: dataDir, BATCH_MAX_WAIT_MS: '50', BATCH_MAX_SIZE: '64' });
    const servers = await Promise.all(dataDirs.map((dir) => startServerProcess(environment(dir), 45_000)));
    const replicas: Replica[] = servers.map((server, i) => ({ dataDir: dataDirs[i]!, server, acknowledged: new Set(), failures: [], dying: false }));

    // Migrated once: one row per migration file in node-pg-migrate's table, and one replica applied them.
    const files = (await readdir(MIGRATIONS_DIR)).filter((name) => name.endsWith('.sql') || name.endsWith('.js') || name.endsWith('.ts'));
    const { rows: migrations } = await db.pool.query<{ name: string }>('SELECT name FROM ingest_migrations ORDER BY id');
    assert.deepEqual(migrations.map((row) => row.name).sort(), files.map((name) => name.replace(/\.(sql|js|ts)$/, '')).sort(), 'each migration recorded once');
    const appliers = servers.filter((server) => server.logs.some((line) => line.includes('applied database migrations')));
    assert.equal(appliers.length, 1, 'exactly one replica applied the migrations; the others waited on the advisory lock and found nothing to do');

    // A bounded load over all three (4 connections each).
    let stopLoad = false;
    const stop = () => stopLoad;
    const loads = replicas.map((replica) => load(replica, 4, stop));
    const total = () => replicas.reduce((sum, replica) => sum + replica.acknowledged.size, 0);
    await waitFor(() => replicas.every((replica) => replica.acknowledged.size >= 200), 20_000, 'every replica to acknowledge 200 events');

    // SIGKILL replica 0 under load; the survivors keep answering 202.
    const victim = replicas[0]!;
    victim.dying = true;
    victim.server.child.kill('SIGKILL');
    assert.equal((await victim.server.exited).signal, 'SIGKILL');
    await loads[0];
    const victimAcknowledged = victim.acknowledged.size;
    const survivors = replicas.slice(1);
    const atKill = survivors.map((replica) => replica.acknowledged.size);
    await waitFor(() => survivors.every((replica, i) => replica.acknowledged.size >= atKill[i]! + 300), 20_000, 'the survivors to acknowledge 300 more each');
    stopLoad = true;
    await Promise.all(loads);
    for (const [i, replica] of survivors.entries()) assert.deepEqual(replica.failures, [], `survivor ${i + 1} answered 202 to every request`);
    assert.deepEqual(victim.failures, [], 'the victim answered 202 to every request before its death');

    // Restart the killed replica on its DATA_DIR: its write-ahead log is replayed before it listens.
    victim.server = await startServerProcess(environment(victim.dataDir), 45_000);
    const replayedMetric = /^ingest_wal_replayed_total (\d+)$/m.exec(await (await fetch(`${victim.server.origin}/metrics`)).text());
    await waitFor(async () => (await Promise.all(replicas.map((replica) => queueEmpty(replica.server)))).every(Boolean), 20_000, 'every queue to drain');
    for (const replica of replicas) replica.server.child.kill('SIGTERM');
    for (const replica of replicas) assert.equal((await replica.server.exited).code, 0, 'clean SIGTERM exit');

    const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM events WHERE tenant = $1', [TENANT]);
    const stored = new Set(rows.map((row) => row.id));
    assert.equal(stored.size, rows.length, 'no id stored twice');
    for (const [i, replica] of replicas.entries()) {
      const lost = [...replica.acknowledged].filter((id) => !stored.has(id));
      assert.deepEqual(lost, [], `every id replica ${i} acknowledged is stored`);
    }
    assert.deepEqual([...stored].filter((id) => !sent.has(id)), [], 'nothing stored that was never sent');
    t.diagnostic(
      `${total()} acknowledged (victim ${victimAcknowledged} before its SIGKILL; survivors ${survivors.map((r) => r.acknowledged.size).join(', ')}), ` +
        `${stored.size} stored; the restarted victim replayed ${replayedMetric?.[1] ?? '?'} events from its log`,
    );
  });
});
