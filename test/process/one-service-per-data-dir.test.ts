import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runScript } from '../helpers/run-script.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { sampleEvent } from '../helpers/service.ts';

const EXIT_DATA_DIR_LOCKED = 5;

async function postCommitted(server: ServerProcess, tenant: string): Promise<number> {
  const response = await fetch(`${server.origin}/event`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(sampleEvent({ tenant })),
  });
  await response.body?.cancel();
  return response.status;
}

describe('one service per DATA_DIR', () => {
  let dataDir: string;
  before(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-one-service-'));
  });
  after(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('refuses a second service on a running one’s DATA_DIR, leaves the first and its database alone, and starts again at once after a SIGKILL', async () => {
    // Embedded PostgreSQL (no DATABASE_URL): the case where a second instance used to stop the first one's database.
    // ACK_MODE=committed: a 201 says the row is in the database.
    const environment = { DATABASE_URL: '', DATA_DIR: dataDir, ACK_MODE: 'committed', BATCH_MAX_WAIT_MS: '10' };
    const first = await startServerProcess(environment, 60_000);
    let firstKilled = false;
    try {
      assert.equal(await postCommitted(first, 'before-second'), 201);

      await assert.rejects(startServerProcess(environment, 60_000), (error: Error) => {
        assert.match(error.message, new RegExp(`exited with ${EXIT_DATA_DIR_LOCKED} before listening`));
        assert.match(error.message, new RegExp(`DATA_DIR ${dataDir} is in use by another ingest service \\(pid ${first.child.pid} on host`));
        assert.doesNotMatch(error.message, /still running; stopping it/, 'the first one’s database was not touched');
        return true;
      });

      assert.equal(await postCommitted(first, 'after-second'), 201, 'the first service still stores events');
      const ready = await fetch(`${first.origin}/readyz`);
      assert.equal(ready.status, 200);

      // The tools work beside the running service (they use its database; they take no lock).
      const keys = await runScript('keys', ['list'], { DATABASE_URL: '', DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
      assert.equal(keys.code, 0, keys.stderr);

      first.child.kill('SIGKILL');
      await first.exited;
      firstKilled = true;

      // No stale lock: the kernel released it with the process. The killed service's database
      // (left running) is a leftover now, stopped and restarted by the new owner.
      const third = await startServerProcess(environment, 60_000);
      try {
        assert.ok(third.logs.some((line) => line.includes('an embedded PostgreSQL from an earlier run is still running; stopping it')));
        assert.equal(await postCommitted(third, 'after-kill'), 201);
      } finally {
        third.child.kill('SIGTERM');
        assert.equal((await third.exited).code, 0, third.logs.slice(-5).join('\n'));
      }
    } finally {
      if (!firstKilled) {
        first.child.kill('SIGTERM');
        await first.exited;
      }
    }
  });
});
