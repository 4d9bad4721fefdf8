import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { waitFor } from '../helpers/service.ts';

/** The pid of the node process that serves (pino writes it on every line), not npm's. */
function servicePid(server: ServerProcess): number {
  const line = server.logs.find((entry) => entry.includes('Server listening at'));
  assert.ok(line);
  return (JSON.parse(line) as { pid: number }).pid;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start delivers signals to the service', () => {
  let db: TestDatabase;
  const started: number[] = [];
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    for (const pid of started) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    await db.drop();
  });

  it('SIGTERM to npm (what a supervisor sends it) runs the service’s shutdown; nothing is left running', async () => {
    const server = await startServerProcess({ DATABASE_URL: db.url }, 30_000, { command: 'npm-start', detached: true });
    const pid = servicePid(server);
    started.push(pid);
    assert.notEqual(pid, server.child.pid, 'npm runs the service as its child');
    server.child.kill('SIGTERM');
    const { code } = await server.exited;
    await waitFor(() => !isAlive(pid), 10_000, 'the service process to exit');
    assert.ok(server.logs.some((line) => line.includes('shutdown complete')), server.logs.slice(-5).join('\n'));
    assert.equal(code, 0, 'npm exits with the service’s code');
  });

  it(
    'Ctrl-C (SIGINT to the process group: the service gets it from the terminal and again from npm) drains once, not a forced exit',
    async () => {
      const server = await startServerProcess({ DATABASE_URL: db.url }, 30_000, { command: 'npm-start', detached: true });
      const pid = servicePid(server);
      started.push(pid);
      process.kill(-server.child.pid!, 'SIGINT');
      const { code } = await server.exited;
      await waitFor(() => !isAlive(pid), 10_000, 'the service process to exit');
      assert.ok(!server.logs.some((line) => /second SIGINT/.test(line)), 'the echo is not taken for a second Ctrl-C');
      assert.ok(server.logs.some((line) => line.includes('shutdown complete')), server.logs.slice(-5).join('\n'));
      assert.equal(code, 0);
    },
  );
});
