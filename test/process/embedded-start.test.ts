import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

describe('npm start with no DATABASE_URL', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-embedded-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('starts an embedded PostgreSQL under DATA_DIR, stores events, and keeps them across restarts', async () => {
    const environment = { DATABASE_URL: '', DATA_DIR: dataDir };
    const first = await startServerProcess(environment, 60_000);
    const response = await fetch(`${first.origin}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(sampleEvent({ tenant: 'embedded' })),
    });
    assert.equal(response.status, 202);
    const { id } = (await response.json()) as { id: string };
    first.child.kill('SIGTERM');
    assert.equal((await first.exited).code, 0, first.logs.slice(-5).join('\n'));

    const second = await startServerProcess(environment, 60_000);
    try {
      const portLine = second.logs.find((line) => line.includes('embedded PostgreSQL started'));
      assert.ok(portLine, 'the embedded server was started');
      const { port } = JSON.parse(portLine) as { port: number };
      const client = new pg.Client({ connectionString: `postgres://postgres:ingest-embedded@127.0.0.1:${port}/postgres` });
      await client.connect();
      try {
        await waitFor(async () => (await client.query('SELECT 1 FROM events WHERE id = $1', [id])).rowCount === 1, 5000, 'the row');
        const { rows } = await client.query<{ tenant: string }>('SELECT tenant FROM events');
        assert.deepEqual(rows, [{ tenant: 'embedded' }], 'the event stored before the restart is still there, once');
      } finally {
        await client.end();
      }
    } finally {
      second.child.kill('SIGTERM');
      assert.equal((await second.exited).code, 0);
    }
  });
});
