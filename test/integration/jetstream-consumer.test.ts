import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { jetstream } from '@nats-io/jetstream';
import { pino } from 'pino';
import { loadConsumerConfig } from '../../src/consumer/consumer-config.ts';
import { ConsumerRuntime } from '../../src/consumer/consumer-runtime.ts';
import { readDeadLetterFiles } from '../../src/dlq/dlq-files.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { JetStreamSink } from '../../src/sink/jetstream-sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';
import { createScratchStream, jetStreamSkip, type ScratchStream } from '../helpers/jetstream.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

const skip = await jetStreamSkip('jetstream-consumer');

const REPOSITORY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const signal = new AbortController().signal;

/** Publish `events` to the scratch stream as the service does, in batches of 1000. */
async function publish(stream: ScratchStream, events: readonly QueuedEvent[]): Promise<void> {
  const sink = new JetStreamSink(jetstream(stream.nc), { publishTimeoutMs: 5000, subjectPrefix: stream.subjectPrefix });
  for (let start = 0; start < events.length; start += 1000) await sink.write(events.slice(start, start + 1000), { signal });
}

const consumerEnvironment = (stream: ScratchStream, db: TestDatabase, dataDir: string): Record<string, string> => ({
  ...stream.environment,
  DATABASE_URL: db.url,
  DATA_DIR: dataDir,
  METRICS_PORT: '0',
  METRICS_HOST: '127.0.0.1',
  LOG_LEVEL: 'silent',
  CONSUMER_FETCH_EXPIRES_MS: '1000',
  CONSUMER_ACK_WAIT_MS: '2000',
  RETRY_BASE_DELAY_MS: '10',
  RETRY_MAX_DELAY_MS: '50',
});

async function metric(address: string, series: string): Promise<number> {
  const text = await (await fetch(`${address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

async function storedIds(db: TestDatabase): Promise<string[]> {
  const { rows } = await db.pool.query<{ key: string }>("SELECT tenant || '/' || id AS key FROM events ORDER BY 1");
  return rows.map((row) => row.key);
}

describe('npm run consume: JetStream → PostgreSQL', { skip }, () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });

  it('stores every event the service accepted exactly once: a re-published row is a duplicate, a refused row is dead-lettered, a foreign message is terminated; acks follow commits', async () => {
    await db.pool.query('TRUNCATE events');
    const stream = await createScratchStream();
    const dataDir = path.join(tmpdir(), `consumer-test-${randomUUID()}`);
    const service = await buildTestService(db.url, { ...stream.environment, ACK_MODE: 'committed' });
    let consumer: ConsumerRuntime | undefined;
    try {
      const sent = Array.from({ length: 400 }, (_, index) => sampleEvent({ id: randomUUID(), tenant: index % 2 ? 'acme' : 'globex.eu' }));
      const response = await service.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: sent.map((e) => JSON.stringify(e)).join('\n') });
      assert.equal(response.statusCode, 201, response.body);
      // Past the duplicate window (another Msg-Id): only the primary key can catch it.
      const again = queuedEvent({ tenant: 'acme' }, String(sent[1]!.id));
      const js = jetstream(stream.nc);
      await js.publish(`${stream.subjectPrefix}.acme`, again.row, { msgID: 'outside-the-window' });
      // A value PostgreSQL refuses (22007): isolated and dead-lettered, the rest of its batch stored.
      const poison = queuedEvent({ tenant: 'acme' });
      await js.publish(`${stream.subjectPrefix}.acme`, poison.row.replace('2026-11-22T05:00:00.000Z', 'not a time'), { msgID: 'poison' });
      await js.publish(`${stream.subjectPrefix}.acme`, 'hello', { msgID: 'foreign' });

      consumer = await ConsumerRuntime.start(loadConsumerConfig({ ...consumerEnvironment(stream, db, dataDir), CONSUMER_BATCH_SIZE: '150' }), pino({ level: 'silent' }));
      void consumer.run();
      const address = consumer.metricsAddress!;
      await waitFor(async () => (await metric(address, 'ingest_consumer_ack_pending_messages')) === 0 && (await metric(address, 'ingest_consumer_pending_messages')) === 0 && (await db.count()) === sent.length, 15_000, 'the stream to be consumed').catch(async (error: unknown) => {
        process.stderr.write(`${await (await fetch(`${address}/metrics`)).text().then((t) => t.split('\n').filter((l) => l.startsWith('ingest_consumer') || l.startsWith('ingest_retries')).join('\n'))}\ncount ${await db.count()}\n`);
        throw error;
      });
      assert.deepEqual(await storedIds(db), sent.map((e) => `${String(e.tenant)}/${String(e.id)}`).sort());
      assert.equal(await metric(address, 'ingest_consumer_messages_total{outcome="stored"}'), sent.length);
      assert.equal(await metric(address, 'ingest_consumer_messages_total{outcome="duplicate"}'), 1);
      assert.equal(await metric(address, 'ingest_consumer_messages_total{outcome="dead_lettered"}'), 1);
      assert.equal(await metric(address, 'ingest_consumer_messages_total{outcome="undecodable"}'), 1);
      assert.ok((await metric(address, 'ingest_consumer_batch_size_count')) >= 3, 'written in batches of at most 150');
      const deadLetters = (await readDeadLetterFiles(path.join(dataDir, 'dlq'))).flatMap((file) => file.records);
      assert.deepEqual(deadLetters.map((record) => record.event.id), [poison.id]);
      const info = await stream.jsm.consumers.info(stream.name, 'audit-ingest-postgres');
      assert.equal(info.num_ack_pending, 0, 'every message acknowledged');
      assert.equal(info.num_pending, 0);
    } finally {
      await consumer?.close(5_000);
      await service.close();
      await stream.remove();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('SIGKILL of the consumer mid-batch (its COPY held by a lock), then a restart: nothing lost, nothing doubled', async () => {
    await db.pool.query('TRUNCATE events');
    const stream = await createScratchStream();
    const dataDir = path.join(tmpdir(), `consumer-test-${randomUUID()}`);
    const events = Array.from({ length: 10_000 }, (_, index) => queuedEvent({ tenant: `t${index % 5}` }));
    await publish(stream, events);
    assert.equal(await stream.messageCount(), events.length);
    const environment = { ...process.env, ...consumerEnvironment(stream, db, dataDir) };
    // Small batches first, so the kill finds most of the stream unconsumed; the restart takes 500 at once.
    const start = (batchSize: number): ChildProcess =>
      spawn(process.execPath, ['--import', 'tsx', 'scripts/consume.ts'], { cwd: REPOSITORY, env: { ...environment, CONSUMER_BATCH_SIZE: String(batchSize) }, stdio: 'ignore' });
    let child = start(100);
    const locker = await db.pool.connect();
    try {
      await waitFor(async () => (await db.count()) >= 2_000, 15_000, 'the first consumer to store some batches');
      // Hold the next batch's write: its messages are delivered, its COPY waits on the lock.
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE events IN SHARE MODE');
      const waitingOnLock = async () => {
        const { rows } = await db.pool.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        return Number(rows[0]!.n) > 0;
      };
      await waitFor(waitingOnLock, 10_000, "the consumer's batch write to wait on the lock");
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
      await locker.query('ROLLBACK');
      const storedAtKill = await db.count();
      const info = await stream.jsm.consumers.info(stream.name, 'audit-ingest-postgres');
      assert.ok(storedAtKill < events.length, `killed before the end (${storedAtKill} stored)`);
      process.stderr.write(`SIGKILL with ${storedAtKill} stored, ${info.num_ack_pending} delivered and unacknowledged\n`);
      const restartedAtMs = Date.now();
      child = start(500);
      await waitFor(async () => (await db.count()) === events.length, 10_000, 'the restarted consumer to store the rest (nothing lost)');
      process.stderr.write(`the restarted consumer stored the rest in ${Date.now() - restartedAtMs} ms\n`);
      await waitFor(async () => (await stream.jsm.consumers.info(stream.name, 'audit-ingest-postgres')).num_ack_pending === 0, 10_000, 'every message acknowledged');
      assert.deepEqual(await storedIds(db), events.map((e) => `${e.tenant}/${e.id}`).sort(), 'each published event stored once, and nothing else');
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      locker.release();
      child.kill('SIGKILL');
      await stream.remove();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
