import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';
import { TcpProxy, throughProxy } from '../helpers/tcp-proxy.ts';

describe('when the database goes away', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  before(async () => {
    db = await createTestDatabase();
    const target = new URL(db.url);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    await proxy.start();
  });
  after(async () => {
    await proxy.stop();
    await db.drop();
  });

  it('keeps accepted events queued, sheds, opens the breaker, and drains the backlog in order once it returns', async () => {
    const service = await buildTestService(throughProxy(db.url, proxy), {
      // One flush slot, so "in order" is a property of the service, not of which slot won.
      FLUSH_CONCURRENCY: '1',
      QUEUE_CAPACITY: '300',
      BATCH_MAX_SIZE: '50',
      BREAKER_FAILURE_THRESHOLD: '3',
      BREAKER_OPEN_MS: '300',
      RETRY_BASE_DELAY_MS: '10',
      RETRY_MAX_DELAY_MS: '100',
      DB_CONNECT_TIMEOUT_MS: '500',
    });
    const acknowledged: string[] = [];
    const statuses = new Map<number, number>();
    const send = async (count: number) => {
      for (let i = 0; i < count; i += 1) {
        const id = randomUUID();
        const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ id, tenant: 'outage' }) });
        statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
        if (response.statusCode === 202) acknowledged.push(id);
        else assert.ok(response.headers['retry-after'], 'every refusal says when to retry');
      }
    };
    try {
      await send(100);
      await waitFor(async () => (await db.count("tenant = 'outage'")) === 100, 10_000, 'the first 100 events');

      await proxy.cut();
      await send(400);
      // The batch being written (at most 50, its flush slot stuck) is out of the queue.
      const inFlight = service.pipeline.depth - service.pipeline.queuedDepth;
      assert.ok(inFlight > 0 && inFlight <= 50, `${inFlight} in flight`);
      assert.equal(service.pipeline.queuedDepth, 240, 'queued up to the 80% high-water mark of 300');
      assert.equal(statuses.get(202), 100 + 240 + inFlight, 'accepted until the queue reached the mark');
      assert.equal(statuses.get(429), 400 - 240 - inFlight, 'then shed with 429');
      await waitFor(() => service.chain.breaker.state !== 'closed', 10_000, 'the breaker to open');
      const ready = await service.app.inject('/readyz');
      assert.equal(ready.statusCode, 503);
      const metricsText = (await service.app.inject('/metrics')).body;
      assert.match(metricsText, /ingest_breaker_transitions_total\{to="open"\} [1-9]/);
      assert.match(metricsText, /ingest_retries_total [1-9]/);
      assert.equal(service.pipeline.depth, 240 + inFlight, 'nothing accepted was given up');

      await proxy.restore();
      await waitFor(() => service.pipeline.depth === 0, 20_000, 'the backlog to drain');
      assert.equal(service.chain.breaker.state, 'closed');
      const { rows } = await db.pool.query<{ id: string; txid: string }>("SELECT id, xmin::text AS txid FROM events WHERE tenant = 'outage'");
      assert.equal(rows.length, acknowledged.length, 'every acknowledged event stored once');
      assert.deepEqual(new Set(rows.map((r) => r.id)), new Set(acknowledged));
      // In order: each batch commits in its own transaction; every event of an earlier
      // transaction was acknowledged before every event of a later one.
      const position = new Map(acknowledged.map((id, index) => [id, index]));
      const byTransaction = new Map<number, number[]>();
      for (const row of rows) byTransaction.set(Number(row.txid), [...(byTransaction.get(Number(row.txid)) ?? []), position.get(row.id)!]);
      const batches = [...byTransaction.entries()].sort(([a], [b]) => a - b).map(([, positions]) => positions);
      assert.ok(batches.length >= 240 / 50, `the backlog went in ${batches.length} batches`);
      for (let i = 1; i < batches.length; i += 1) {
        assert.ok(Math.max(...batches[i - 1]!) < Math.min(...batches[i]!), `batch ${i} holds an event acknowledged before one of batch ${i - 1}`);
      }
      const failed = await service.metrics.registry.getSingleMetricAsString('ingest_events_failed_total');
      assert.match(failed, /ingest_events_failed_total 0/);
      assert.equal((await service.app.inject('/readyz')).statusCode, 200);
    } finally {
      await proxy.restore().catch(() => {});
      await service.close();
    }
  });
});
