import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../../src/db/embedded-postgres.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

/** The password every embedded cluster had before it got a secret of its own. */
const OLD_PASSWORD = 'ingest-embedded';

function embeddedPort(server: ServerProcess): number {
  const line = server.logs.find((entry) => entry.includes('embedded PostgreSQL started'));
  assert.ok(line, 'the embedded server was started');
  return (JSON.parse(line) as { port: number }).port;
}

async function connect(port: number, password: string): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
  await client.connect();
  return client;
}

async function assertPasswordRefused(port: number, password: string): Promise<void> {
  await assert.rejects(connect(port, password), (error: { code?: string }) => {
    assert.equal(error.code, '28P01', 'password authentication failed');
    return true;
  });
}

async function stop(server: ServerProcess): Promise<void> {
  server.child.kill('SIGTERM');
  assert.equal((await server.exited).code, 0, server.logs.slice(-5).join('\n'));
}

describe('npm start with no DATABASE_URL', () => {
  let dataDir: string;
  let secretFile: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-embedded-'));
    secretFile = path.join(dataDir, 'postgres.secret');
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('starts an embedded PostgreSQL under DATA_DIR with a secret of its own, stores events, and keeps them across restarts', async () => {
    const environment = { DATABASE_URL: '', DATA_DIR: dataDir };
    const first = await startServerProcess(environment, 60_000);
    const response = await fetch(`${first.origin}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(sampleEvent({ tenant: 'embedded' })),
    });
    assert.equal(response.status, 202);
    const { id } = (await response.json()) as { id: string };
    await stop(first);

    assert.equal((await stat(secretFile)).mode & 0o777, 0o600, 'the secret is readable by its owner only');
    const secret = (await readFile(secretFile, 'utf8')).trim();
    assert.ok(secret.length >= 32 && secret !== OLD_PASSWORD);

    const second = await startServerProcess(environment, 60_000);
    try {
      const port = embeddedPort(second);
      await assertPasswordRefused(port, OLD_PASSWORD);
      const client = await connect(port, secret);
      try {
        await waitFor(async () => (await client.query('SELECT 1 FROM events WHERE id = $1', [id])).rowCount === 1, 5000, 'the row');
        const { rows } = await client.query<{ tenant: string }>('SELECT tenant FROM events');
        assert.deepEqual(rows, [{ tenant: 'embedded' }], 'the event stored before the restart is still there, once');
      } finally {
        await client.end();
      }
      assert.ok(!second.logs.some((line) => line.includes(secret)), 'the secret is never logged');
    } finally {
      await stop(second);
    }
  });

  it('moves a cluster that still has the old built-in password onto a new secret at its first start', async () => {
    // Put the cluster back in the state an earlier version left it: the old password, no secret file.
    const clusterDir = path.join(dataDir, 'postgres');
    const embedded = await startEmbeddedPostgres({ dataDir: clusterDir, logger: pino({ level: 'silent' }) });
    const admin = new pg.Client({ connectionString: embedded.url });
    await admin.connect();
    await admin.query(`ALTER USER postgres PASSWORD '${OLD_PASSWORD}'`);
    await admin.end();
    await embedded.stop();
    await rm(secretFile);

    const server = await startServerProcess({ DATABASE_URL: '', DATA_DIR: dataDir }, 60_000);
    try {
      assert.ok(server.logs.some((line) => line.includes('moved the embedded PostgreSQL superuser off the old built-in password')));
      const port = embeddedPort(server);
      await assertPasswordRefused(port, OLD_PASSWORD);
      assert.equal((await stat(secretFile)).mode & 0o777, 0o600);
      const client = await connect(port, (await readFile(secretFile, 'utf8')).trim());
      try {
        const { rows } = await client.query<{ tenant: string }>('SELECT tenant FROM events');
        assert.deepEqual(rows, [{ tenant: 'embedded' }], 'the data is untouched');
      } finally {
        await client.end();
      }
    } finally {
      await stop(server);
    }
  });
});
