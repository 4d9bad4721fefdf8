import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';
import { TcpProxy, throughProxy } from '../helpers/tcp-proxy.ts';

/** The breaker's open window in these tests: far longer than any wait below, so only a probe can end it. */
const OPEN_MS = 120_000;

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

describe('breaker recovery follows the database, not the open window', () => {
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

  async function send(service: TestService, tenant: string, count: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < count; i += 1) {
      const id = randomUUID();
      const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ id, tenant }) });
      assert.equal(response.statusCode, 202);
      ids.push(id);
    }
    return ids;
  }

  const scrape = async (service: TestService) => (await service.app.inject('/metrics')).body;

  it('after a frozen network heals, the backlog commits without waiting out BREAKER_OPEN_MS; probes are counted', async () => {
    const service = await buildTestService(throughProxy(db.url, proxy), {
      BREAKER_OPEN_MS: String(OPEN_MS),
      BREAKER_FAILURE_THRESHOLD: '2',
      // One pooled connection: a frozen network first shows as a COPY timeout on it (not a
      // connection failure: a lock looks the same), then as a connect timeout on the next one.
      // With more pooled connections than the threshold, every failure of the run could be a
      // COPY timeout and the breaker would (rightly) wait out its window: that made this flaky.
      // The default threshold (5) is above the default pool (4) for the same reason.
      DB_POOL_SIZE: '1',
      DB_CONNECT_TIMEOUT_MS: '500',
      DB_COPY_TIMEOUT_MS: '1000',
      RETRY_BASE_DELAY_MS: '10',
      RETRY_MAX_DELAY_MS: '200',
      BATCH_MAX_SIZE: '20',
    });
    try {
      await send(service, 'freeze', 10);
      await waitFor(async () => (await db.count("tenant = 'freeze'")) === 10, 10_000, 'the first events');

      proxy.freeze();
      const backlog = await send(service, 'freeze', 40);
      await waitFor(() => service.chain.breaker.state === 'open', 20_000, 'the breaker to open');
      assert.equal(service.chain.breaker.recovery, 'probe', 'a frozen network is a connection failure: recovery by probing');
      assert.equal((await service.app.inject('/readyz')).statusCode, 503);
      await waitFor(async () => metricValue(await scrape(service), 'ingest_database_probes_total{result="failure"}') >= 2, 15_000, 'probes to fail');
      assert.equal(service.chain.breaker.state, 'open', 'a failed probe keeps it open');
      assert.equal(await db.count("tenant = 'freeze'"), 10, 'nothing of the backlog reached the database');

      proxy.thaw();
      // Well inside OPEN_MS: before probing, this waited out the whole window.
      await waitFor(() => service.pipeline.depth === 0, 15_000, 'the backlog to be stored after the heal');
      assert.equal(await db.count("tenant = 'freeze'"), 50);
      const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'freeze'");
      const stored = new Set(rows.map((row) => row.id));
      assert.deepEqual(backlog.filter((id) => !stored.has(id)), [], 'every acknowledged event stored');
      assert.equal(service.chain.breaker.state, 'closed');
      assert.equal((await service.app.inject('/readyz')).statusCode, 200);
      const text = await scrape(service);
      assert.ok(metricValue(text, 'ingest_database_probes_total{result="success"}') >= 1, 'the probe that found it back is counted');
      assert.match(text, /^# HELP ingest_database_probes_total \S/m);
    } finally {
      proxy.thaw();
      await service.close();
    }
  });

  it('after every connection is reset and the database is back at once, it recovers by probing too', async () => {
    const service = await buildTestService(throughProxy(db.url, proxy), {
      BREAKER_OPEN_MS: String(OPEN_MS),
      BREAKER_FAILURE_THRESHOLD: '1',
      DB_CONNECT_TIMEOUT_MS: '500',
      RETRY_BASE_DELAY_MS: '10',
      RETRY_MAX_DELAY_MS: '200',
    });
    try {
      await send(service, 'reset', 5);
      await waitFor(async () => (await db.count("tenant = 'reset'")) === 5, 10_000, 'the first events');
      await proxy.cut();
      await send(service, 'reset', 20);
      await waitFor(() => service.chain.breaker.state === 'open', 10_000, 'the breaker to open');
      await proxy.restore();
      await waitFor(() => service.pipeline.depth === 0, 15_000, 'the backlog to be stored');
      assert.equal(await db.count("tenant = 'reset'"), 25);
      assert.equal(service.chain.breaker.state, 'closed');
    } finally {
      await proxy.restore().catch(() => {});
      await service.close();
    }
  });
});
