/**
 * startTracing (the real one server.ts uses) exports spans over OTLP/HTTP to
 * OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, with OTEL_SERVICE_NAME as the service.name resource,
 * and its shutdown flushes what is pending.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startTracing, tracer } from '../../src/telemetry/tracing.ts';

interface Received {
  path: string;
  contentType: string;
  body: string;
}

describe('startTracing: OTLP over HTTP', () => {
  const received: Received[] = [];
  const collector = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      received.push({ path: request.url ?? '', contentType: String(request.headers['content-type']), body });
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  let endpoint: string;
  before(async () => {
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => collector.close(() => resolve())));

  it('sends a span to <endpoint>/v1/traces with the service name, flushed by the returned shutdown', async () => {
    const stop = await startTracing({ OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: 'ingest-under-test' }, pino({ level: 'silent' }));
    tracer().startSpan('a span to export').end();
    await stop();
    const traces = received.filter((request) => request.path === '/v1/traces');
    assert.equal(traces.length, 1, JSON.stringify(received.map((request) => request.path)));
    assert.match(traces[0]!.contentType, /^application\/json/);
    assert.match(traces[0]!.body, /"ingest-under-test"/);
    assert.match(traces[0]!.body, /"a span to export"/);
  });
});
