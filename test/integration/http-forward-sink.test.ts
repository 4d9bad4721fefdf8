import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import { readDeadLetterFiles } from '../../src/dlq/dlq-files.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

/** NDJSON of the events; a metadata value 'EXACT' becomes a number a double cannot hold. */
const ndjson = (events: Record<string, unknown>[]) => events.map((event) => JSON.stringify(event).replace('"EXACT"', '12345678901234567890')).join('\n');

const metric = async (service: TestService, name: string, labels = ''): Promise<number> => {
  const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const lines = text.split('\n').filter((l) => (labels ? l.startsWith(prefix) : l.startsWith(prefix) || l.startsWith(`${name}{`)));
  return lines.reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
};

/** POST a bulk to the edge; the ids it acknowledged (the obligations). */
async function postToEdge(edge: TestService, events: Record<string, unknown>[]): Promise<string[]> {
  const response = await edge.app.inject({ method: 'POST', url: '/events', headers: { 'content-type': 'application/x-ndjson' }, payload: ndjson(events) });
  assert.equal(response.statusCode, 202, response.body);
  return response.json<{ accepted: { id: string }[] }>().accepted.map((item) => item.id);
}

async function storedIds(db: TestDatabase): Promise<string[]> {
  return (await db.pool.query<{ id: string }>('SELECT id::text FROM events')).rows.map((row) => row.id);
}

async function deadLetteredIds(service: TestService): Promise<string[]> {
  return (await readDeadLetterFiles(service.config.deadLetter.directory)).flatMap((file) => file.records.map((record) => record.event.id!));
}

/**
 * The obligation ledger: every id the edge acknowledged is stored in central or dead-lettered at
 * the edge, exactly once across both; nothing is stored that was not acknowledged.
 */
function reconcile(acknowledged: readonly string[], stored: readonly string[], deadLettered: readonly string[]): void {
  const owed = new Set(acknowledged);
  assert.equal(new Set(stored).size, stored.length, 'nothing stored twice');
  assert.equal(new Set(deadLettered).size, deadLettered.length, 'nothing dead-lettered twice');
  for (const id of stored) assert.ok(owed.has(id), `stored ${id} was acknowledged`);
  for (const id of deadLettered) assert.ok(owed.has(id) && !stored.includes(id), `dead-lettered ${id} was acknowledged and not stored`);
  assert.equal(stored.length + deadLettered.length, owed.size, 'every acknowledged id is stored or dead-lettered');
}

/** A central instance listening on loopback (SINK=postgres), as the edge's FORWARD_URL reaches it. */
async function startCentral(db: TestDatabase, environment: Record<string, string> = {}, wrapBaseSink?: (sink: Sink) => Sink): Promise<{ central: TestService; port: number }> {
  const central = await buildTestService(db.url, { HOST: '127.0.0.1', PORT: '0', ...environment }, wrapBaseSink ? { wrapBaseSink } : {});
  await central.listen();
  return { central, port: (central.app.server.address() as AddressInfo).port };
}

const edgeEnvironment = (port: number, extra: Record<string, string> = {}) => ({
  SINK: 'http',
  FORWARD_URL: `http://127.0.0.1:${port}`,
  FORWARD_TIMEOUT_MS: '2000',
  RETRY_BASE_DELAY_MS: '20',
  RETRY_MAX_DELAY_MS: '100',
  ...extra,
});

describe('SINK=http: an edge forwarding to a central instance', () => {
  let centralDb: TestDatabase;
  let edgeDb: TestDatabase;
  before(async () => {
    [centralDb, edgeDb] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  });
  after(async () => {
    await Promise.all([centralDb?.drop(), edgeDb?.drop()]);
  });

  it('every event posted to the edge is stored once in central, in gzip requests within FORWARD_MAX_EVENTS; a re-sent bulk is not doubled', async () => {
    await centralDb.pool.query('TRUNCATE events');
    const { central, port } = await startCentral(centralDb, { BULK_MAX_EVENTS: '50' });
    const edge = await buildTestService(edgeDb.url, edgeEnvironment(port, { FORWARD_MAX_EVENTS: '50', BATCH_MAX_SIZE: '200' }));
    try {
      const sent = Array.from({ length: 300 }, (_, index) =>
        sampleEvent({ id: randomUUID(), tenant: index % 3 === 0 ? 'acme.eu' : 'globex', metadata: { n: 'EXACT', text: 'tab\there' } }),
      );
      const acknowledged = await postToEdge(edge, sent);
      acknowledged.push(...(await postToEdge(edge, sent.slice(0, 100)))); // a client's retry of part of it
      await waitFor(() => edge.pipeline.depth === 0, 15_000, 'the edge to forward everything');
      await waitFor(() => central.pipeline.depth === 0, 15_000, 'central to store everything');
      const stored = await storedIds(centralDb);
      reconcile(acknowledged, stored, await deadLetteredIds(edge));
      assert.equal(stored.length, 300);
      assert.equal(await edgeDb.count(), 0, 'the edge writes no events to its own PostgreSQL');
      // The event arrived as it was sent: exact numbers in metadata, escapes, tenant, actor.
      const { rows } = await centralDb.pool.query<{ tenant: string; actor_id: string; metadata: string }>('SELECT tenant, actor_id, metadata::text FROM events WHERE id = $1', [sent[3]!.id]);
      assert.equal(rows[0]?.tenant, 'acme.eu');
      assert.equal(rows[0]?.actor_id, (sent[3]!.actor as { id: string }).id);
      assert.match(rows[0].metadata, /"n": 12345678901234567890/);
      assert.match(rows[0].metadata, /tab\\there/);
      assert.equal(await metric(edge, 'ingest_events_dead_lettered_total'), 0);
      assert.equal(await metric(central, 'ingest_http_responses_total', 'route="/events",status="413"'), 0, 'no request above the receiver limit');
      const raw = Buffer.byteLength(ndjson(sent)) + Buffer.byteLength(ndjson(sent.slice(0, 100)));
      assert.ok(edge.forward!.bytesSent < raw / 2, `gzip on the wire: ${edge.forward!.bytesSent} bytes for about ${raw} of NDJSON`);
    } finally {
      await edge.close();
      await central.close();
    }
  });

  it('a central that is full answers 429/503: the edge retries after Retry-After, nothing is lost and nothing doubled', async () => {
    await centralDb.pool.query('TRUNCATE events');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held = (inner: Sink): Sink => ({
      async write(batch, options) {
        await gate;
        return inner.write(batch, options);
      },
    });
    const { central, port } = await startCentral(centralDb, { QUEUE_CAPACITY: '100', BATCH_MAX_SIZE: '20', ADMISSION_POLICY: 'depth' }, held);
    const edge = await buildTestService(edgeDb.url, edgeEnvironment(port, { FORWARD_MAX_EVENTS: '30', BATCH_MAX_SIZE: '30', FORWARD_MAX_RETRY_AFTER_MS: '100' }));
    try {
      const acknowledged = await postToEdge(edge, Array.from({ length: 300 }, () => sampleEvent()));
      await waitFor(async () => (await metric(central, 'ingest_http_responses_total', 'route="/events",status="429"')) + (await metric(central, 'ingest_http_responses_total', 'route="/events",status="503"')) >= 1, 15_000, 'central to refuse a request');
      await waitFor(async () => (await metric(edge, 'ingest_retries_total')) >= 1, 15_000, 'the edge to retry');
      assert.equal(await centralDb.count(), 0, 'central stored nothing while its writes are held');
      release();
      await waitFor(() => edge.pipeline.depth === 0, 30_000, 'the edge to forward everything');
      await waitFor(() => central.pipeline.depth === 0, 15_000, 'central to store everything');
      reconcile(acknowledged, await storedIds(centralDb), await deadLetteredIds(edge));
      assert.equal(await centralDb.count(), 300);
    } finally {
      release();
      await edge.close();
      await central.close();
    }
  });

  it('events central refuses one by one (a tenant its API key does not cover: 403) are dead-lettered at the edge; the others are stored', async () => {
    await centralDb.pool.query('TRUNCATE events');
    const { central, port } = await startCentral(centralDb, { AUTH: 'on' });
    const { key } = await new ApiKeyStore(centralDb.pool).create('acme', 'edge forwarder');
    const edge = await buildTestService(edgeDb.url, edgeEnvironment(port, { FORWARD_API_KEY: key }));
    try {
      const sent = Array.from({ length: 40 }, (_, index) => sampleEvent({ id: randomUUID(), tenant: index % 10 === 7 ? 'globex' : 'acme' }));
      const acknowledged = await postToEdge(edge, sent);
      await waitFor(() => edge.pipeline.depth === 0, 15_000, 'the edge to settle everything');
      await waitFor(() => central.pipeline.depth === 0, 15_000, 'central to store everything');
      const deadLettered = await deadLetteredIds(edge);
      reconcile(acknowledged, await storedIds(centralDb), deadLettered);
      const refused = sent.filter((event) => event.tenant === 'globex').map((event) => String(event.id));
      assert.deepEqual([...deadLettered].sort(), refused.sort());
      const [file] = await readDeadLetterFiles(edge.config.deadLetter.directory);
      assert.match(file!.records[0]!.error.message, /403/);
    } finally {
      await edge.close();
      await central.close();
    }
  });

  it('central unreachable: the breaker opens, the write-ahead log keeps the 202s across an edge restart, and they reach central once it is back', async () => {
    await centralDb.pool.query('TRUNCATE events');
    const { central, port } = await startCentral(centralDb);
    const proxy = new TcpProxy({ host: '127.0.0.1', port });
    await proxy.start();
    const dataDir = path.join(tmpdir(), `ingest-test-edge-${randomUUID()}`);
    const environment = edgeEnvironment(proxy.port, { BREAKER_FAILURE_THRESHOLD: '3' });
    let edge = await buildTestService(edgeDb.url, environment, { dataDir });
    try {
      await proxy.cut();
      const acknowledged = await postToEdge(edge, Array.from({ length: 120 }, () => sampleEvent()));
      await waitFor(async () => (await metric(edge, 'ingest_breaker_state')) === 1, 10_000, 'the breaker to open');
      const ready = await edge.app.inject({ method: 'GET', url: '/readyz' });
      assert.equal(ready.statusCode, 503);
      assert.match(ready.body, /forward receiver/);
      const report = await edge.close(500);
      assert.equal(report.keptIn, 'wal');
      assert.equal(report.unstored, 120);
      assert.equal(await centralDb.count(), 0);
      await proxy.restore();
      edge = await buildTestService(edgeDb.url, environment, { dataDir });
      await waitFor(() => edge.pipeline.depth === 0, 15_000, 'the replayed events to reach central');
      await waitFor(() => central.pipeline.depth === 0, 15_000, 'central to store them');
      reconcile(acknowledged, await storedIds(centralDb), await deadLetteredIds(edge));
      assert.equal(await metric(edge, 'ingest_breaker_state'), 0);
    } finally {
      await edge.close();
      await central.close();
      await proxy.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
