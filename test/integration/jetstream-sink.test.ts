import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Sink } from '../../src/sink/sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { createScratchStream, jetStreamSkip, readAllMessages } from '../helpers/jetstream.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

const skip = await jetStreamSkip('jetstream-sink');

const metric = async (service: TestService, name: string): Promise<number> => {
  const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
};

const ndjson = (events: Record<string, unknown>[]) => events.map((event) => JSON.stringify(event)).join('\n');

describe('SINK=jetstream', { skip }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  it('publishes every 202 once to audit.<tenant> with Nats-Msg-Id <tenant>/<id> and the COPY row as payload; nothing goes to PostgreSQL', async () => {
    const stream = await createScratchStream();
    const service = await buildTestService(db.url, stream.environment);
    try {
      const sent = Array.from({ length: 300 }, (_, index) => sampleEvent({ id: randomUUID(), tenant: index % 3 === 0 ? 'acme.eu' : 'globex' }));
      const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: ndjson(sent) });
      assert.equal(response.statusCode, 202);
      await waitFor(() => service.pipeline.depth === 0, 10_000, 'the queue to drain');
      const messages = await readAllMessages(stream);
      assert.equal(messages.length, sent.length);
      const byId = new Map(messages.map((message) => [message.headers?.get('Nats-Msg-Id') ?? '', message]));
      assert.equal(byId.size, sent.length, 'one message per event');
      for (const event of sent) {
        const message = byId.get(`${String(event.tenant)}/${String(event.id)}`);
        assert.ok(message, `event ${String(event.id)} reached the stream`);
        assert.equal(message.subject, `${stream.subjectPrefix}.${String(event.tenant).replaceAll('.', '%2E')}`);
        const row = message.string();
        assert.ok(row.endsWith('\n') && row.startsWith(`${String(event.id)}\t`), 'the payload is the COPY row');
      }
      assert.equal(await metric(service, 'ingest_events_stored_total'), sent.length);
      assert.equal(await db.count(), 0, 'the edge writes no events to PostgreSQL');
    } finally {
      await service.close();
      await stream.remove();
    }
  });

  it('ACK_MODE=committed answers 201 only once the stream acknowledged; a retried batch is stored once (Nats-Msg-Id dedupe)', async () => {
    const stream = await createScratchStream();
    let failNext = true;
    // The first write reaches the stream and is then reported failed (a lost acknowledgement): the
    // retry publishes the same ids again.
    const loseFirstAck = (inner: Sink): Sink => ({
      async write(batch, options) {
        const result = await inner.write(batch, options);
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('acknowledgement lost'), { code: 'JETSTREAM_ERR_TIMEOUT' });
        }
        return result;
      },
    });
    const service = await buildTestService(db.url, { ...stream.environment, ACK_MODE: 'committed', RETRY_BASE_DELAY_MS: '10', RETRY_MAX_DELAY_MS: '20' }, { wrapBaseSink: loseFirstAck });
    try {
      const sent = Array.from({ length: 50 }, () => sampleEvent({ id: randomUUID() }));
      const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: ndjson(sent) });
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(failNext, false, 'the first attempt failed after publishing');
      assert.equal(await stream.messageCount(), sent.length, 'each event is in the stream once');
      assert.equal(await metric(service, 'ingest_retries_total'), 1);
      assert.equal(await metric(service, 'ingest_events_duplicate_total'), sent.length, 'the retry was answered as duplicates by the stream');
    } finally {
      await service.close();
      await stream.remove();
    }
  });

  it('NATS unreachable (connections reset and refused): 202s keep coming, publishes fail as transient, are retried behind the breaker, and each event reaches the stream once when it is back', async () => {
    const stream = await createScratchStream();
    const proxy = new TcpProxy({ host: '127.0.0.1', port: 4222 });
    await proxy.start();
    const service = await buildTestService(db.url, {
      ...stream.environment,
      NATS_URL: `nats://127.0.0.1:${proxy.port}`,
      NATS_PUBLISH_TIMEOUT_MS: '300',
      RETRY_BASE_DELAY_MS: '20',
      RETRY_MAX_DELAY_MS: '100',
      BREAKER_FAILURE_THRESHOLD: '3',
    });
    try {
      await proxy.cut();
      const sent = Array.from({ length: 120 }, () => sampleEvent({ id: randomUUID() }));
      const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: ndjson(sent) });
      assert.equal(response.statusCode, 202, 'the write-ahead log takes them while NATS is away');
      await waitFor(async () => (await metric(service, 'ingest_breaker_state')) === 1, 10_000, 'the breaker to open');
      const ready = await service.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.match(ready.body, /JetStream/);
      assert.equal(await stream.messageCount(), 0);
      await proxy.restore();
      await waitFor(() => service.pipeline.depth === 0, 15_000, 'the backlog to reach the stream');
      assert.equal(await stream.messageCount(), sent.length, 'each event once');
      assert.equal(await metric(service, 'ingest_breaker_state'), 0);
      assert.ok((await metric(service, 'ingest_retries_total')) >= 3);
    } finally {
      await service.close();
      await proxy.stop();
      await stream.remove();
    }
  });

  it('a shutdown while NATS answers nothing (a frozen network) completes: the unpublished events stay in the write-ahead log, the connection is closed without waiting for an answer', async () => {
    const stream = await createScratchStream();
    const proxy = new TcpProxy({ host: '127.0.0.1', port: 4222 });
    await proxy.start();
    const service = await buildTestService(db.url, { ...stream.environment, NATS_URL: `nats://127.0.0.1:${proxy.port}`, NATS_PUBLISH_TIMEOUT_MS: '300' });
    try {
      proxy.freeze();
      const sent = Array.from({ length: 30 }, () => sampleEvent({ id: randomUUID() }));
      const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: ndjson(sent) });
      assert.equal(response.statusCode, 202);
      const report = await service.close(1_000);
      assert.equal(report.keptIn, 'wal');
      assert.equal(report.unstored, sent.length);
      assert.ok(service.jetstream?.nc.isClosed(), 'the NATS connection is closed');
    } finally {
      await service.close();
      await proxy.stop();
      await stream.remove();
    }
  });
});
