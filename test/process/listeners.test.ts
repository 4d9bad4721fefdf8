import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createServer } from 'node:net';
import { findFreePort } from '../../src/free-port.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { sampleEvent } from '../helpers/service.ts';

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
  });
}

describe('listeners and authentication defaults', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('authenticates by default, and serves /metrics only on METRICS_PORT when it is set', async () => {
    const metricsPort = await findFreePort();
    const server = await startServerProcess({ DATABASE_URL: db.url, AUTH: '', METRICS_PORT: String(metricsPort), METRICS_ON_PUBLIC_LISTENER: '' });
    try {
      const unauthenticated = await fetch(`${server.origin}/event`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(sampleEvent()),
      });
      assert.equal(unauthenticated.status, 401, 'AUTH is on unless turned off');
      assert.equal((await fetch(`${server.origin}/metrics`)).status, 404, '/metrics is not on the public listener');
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /ingest_http_responses_total\{route="\/event",status="401"\} 1/);
      assert.ok(!server.logs.some((line) => line.includes('AUTH=off')));
    } finally {
      server.child.kill('SIGTERM');
      assert.equal((await server.exited).code, 0);
    }
  });

  it('keeps /metrics (which names tenants) off the public listener when METRICS_PORT is unset: 127.0.0.1:9464', async (t) => {
    if (!(await portIsFree(9464))) return t.skip('port 9464 is in use on this machine');
    const server = await startServerProcess({ DATABASE_URL: db.url, METRICS_PORT: '', METRICS_ON_PUBLIC_LISTENER: '' });
    try {
      assert.equal((await fetch(`${server.origin}/metrics`)).status, 404, '/metrics is not on the public listener');
      const metrics = await fetch('http://127.0.0.1:9464/metrics');
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /ingest_http_responses_total/);
    } finally {
      server.child.kill('SIGTERM');
      assert.equal((await server.exited).code, 0);
    }
  });

  it('serves /metrics on the public listener only when METRICS_ON_PUBLIC_LISTENER=true', async () => {
    const server = await startServerProcess({ DATABASE_URL: db.url, METRICS_PORT: '', METRICS_ON_PUBLIC_LISTENER: 'true' });
    try {
      const metrics = await fetch(`${server.origin}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(await metrics.text(), /ingest_http_responses_total/);
    } finally {
      server.child.kill('SIGTERM');
      assert.equal((await server.exited).code, 0);
    }
  });

  it('refuses to start, naming the directory, when DATA_DIR cannot be used', async () => {
    const notADirectory = path.join(tmpdir(), `ingest-not-a-dir-${process.pid}`);
    await writeFile(notADirectory, 'x');
    try {
      await assert.rejects(startServerProcess({ DATABASE_URL: db.url, DATA_DIR: notADirectory }), (error: Error) => {
        assert.match(error.message, /exited with 4 before listening/);
        // The DATA_DIR lock is the first thing made in DATA_DIR, before the write-ahead log.
        assert.ok(error.message.includes(`cannot create the lock file ${notADirectory}/service.lock`), error.message);
        return true;
      });
    } finally {
      await rm(notADirectory, { force: true });
    }
  });

  it('warns loudly at start-up with AUTH=off', async () => {
    const server = await startServerProcess({ DATABASE_URL: db.url, AUTH: 'off' });
    server.child.kill('SIGTERM');
    await server.exited;
    const warning = server.logs.find((line) => line.includes('AUTH=off'));
    assert.ok(warning, 'a warning names AUTH=off');
    assert.equal((JSON.parse(warning) as { level: number }).level, 40);
  });
});
