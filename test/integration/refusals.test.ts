import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { IngestRuntime } from '../../src/runtime.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { sampleEvent, waitFor } from '../helpers/service.ts';

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly err?: { stack?: string };
  readonly [field: string]: unknown;
}

/** The real runtime with its log lines captured (pino to a stream), at debug. */
async function startCapturing(databaseUrl: string, environment: Record<string, string>, wrapBaseSink?: (sink: Sink) => Sink) {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const config = loadConfig({ BATCH_MAX_WAIT_MS: '20', AUTH: 'off', DATA_DIR: path.join(tmpdir(), `ingest-test-${randomUUID()}`), ...environment, DATABASE_URL: databaseUrl });
  const runtime = await IngestRuntime.start({ config, logger: pino({ level: 'debug' }, stream), ...(wrapBaseSink ? { wrapBaseSink } : {}) });
  return {
    runtime,
    lines,
    async close() {
      await runtime.close(10_000);
      await rm(config.dataDir, { recursive: true, force: true });
    },
  };
}

describe('expected refusals', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('logs a queue-full 503 below error level, without a stack, and answers it as a problem with Retry-After', async () => {
    const service = await startCapturing(db.url, { QUEUE_MAX_BYTES: '1024' });
    try {
      const lines = service.lines;
      const before = lines.length;
      const response = await service.runtime.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'full', metadata: { pad: 'x'.repeat(2000) } }) });
      assert.equal(response.statusCode, 503, response.body);
      assert.equal(response.json<{ code: string }>().code, 'INGEST_ERR_QUEUE_FULL');
      assert.ok(response.headers['retry-after']);
      const logged = lines.slice(before);
      const errors = logged.filter((line) => line.level >= 50);
      assert.deepEqual(errors.map((line) => line.msg), [], 'no error-level line for an expected refusal');
      const refusal = logged.find((line) => line.code === 'INGEST_ERR_QUEUE_FULL' && line.msg !== 'request completed');
      assert.ok(refusal, `the refusal is logged: ${JSON.stringify(logged)}`);
      assert.ok(refusal.level <= 30, `at level ${refusal.level}`);
      assert.equal(refusal.err, undefined, 'no error object, no stack');
    } finally {
      await service.close();
    }
  });

  it('answers a request arriving on a keep-alive connection during close with INGEST_ERR_DRAINING problem+json and Retry-After, counted', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let writes = 0;
    const service = await startCapturing(db.url, { ACK_MODE: 'committed' }, (sink) => ({
      write: async (batch, options) => {
        writes += 1;
        await released;
        return sink.write(batch, options);
      },
    }));
    let closing: Promise<void> | undefined;
    try {
      const origin = new URL(await service.runtime.app.listen({ host: '127.0.0.1', port: 0 }));
      let received = 0;
      service.runtime.app.server.on('request', () => (received += 1));
      const socket = net.connect(Number(origin.port), '127.0.0.1');
      socket.on('error', () => {});
      let answer = '';
      socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
      await new Promise((resolve) => socket.once('connect', resolve));
      const request = (body: string) =>
        `POST /event HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
      // A committed-mode request held in the sink keeps this connection busy while the service closes.
      socket.write(request(JSON.stringify(sampleEvent({ tenant: 'held' }))));
      await waitFor(() => writes > 0, 5000, 'the held write');
      closing = service.close();
      await waitFor(() => service.runtime.pipeline.draining, 5000, 'the close to begin');
      socket.write(request(JSON.stringify(sampleEvent({ tenant: 'late' }))));
      await waitFor(() => received === 2, 5000, 'the late request to reach the server');
      release();
      await waitFor(() => (answer.match(/HTTP\/1\.1 /g) ?? []).length === 2, 5000, `two answers, got ${answer}`);
      const late = answer.slice(answer.lastIndexOf('HTTP/1.1 '));
      assert.match(late, /^HTTP\/1\.1 503/);
      assert.match(late, /\r\ncontent-type: application\/problem\+json/i);
      assert.match(late, /\r\nretry-after: \d+/i);
      assert.match(late, /"code":"INGEST_ERR_DRAINING"/);
      socket.destroy();
      await closing;
      const shed = await service.runtime.metrics.registry.getSingleMetricAsString('ingest_shed_total');
      assert.match(shed, /ingest_shed_total\{reason="draining"\} 1/);
      const responses = await service.runtime.metrics.registry.getSingleMetricAsString('ingest_http_responses_total');
      assert.match(responses, /ingest_http_responses_total\{route="\/event",status="503"\} 1/);
      assert.deepEqual(service.lines.filter((line) => line.level >= 50).map((line) => line.msg), []);
    } finally {
      release();
      await (closing ?? service.close());
    }
  });
});
