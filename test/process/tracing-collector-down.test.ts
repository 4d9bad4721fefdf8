import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findFreePort } from '../../src/free-port.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { startServerProcess } from '../helpers/server-process.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

describe('tracing with the collector down', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('keeps accepting and storing events, and still shuts down cleanly', async () => {
    const nobodyListens = await findFreePort();
    const server = await startServerProcess({
      DATABASE_URL: db.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${nobodyListens}`,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      OTEL_EXPORTER_OTLP_TIMEOUT: '500',
    });
    try {
      assert.ok(server.logs.some((line) => line.includes('OpenTelemetry tracing started')));
      for (let i = 0; i < 50; i += 1) {
        const response = await fetch(`${server.origin}/event`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(sampleEvent({ tenant: 'traced-down' })),
        });
        assert.equal(response.status, 202);
      }
      await waitFor(async () => (await db.count("tenant = 'traced-down'")) === 50, 10_000, 'the events to be stored');
    } finally {
      server.child.kill('SIGTERM');
      assert.equal((await server.exited).code, 0);
    }
  });
});
