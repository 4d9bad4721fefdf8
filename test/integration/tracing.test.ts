import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { context, SpanKind, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { LOG_REDACTIONS } from '../../src/telemetry/log-redaction.ts';
import { traceLogFields, tracer } from '../../src/telemetry/tracing.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';

const exporter = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

const idOf = (span: ReadableSpan) => span.spanContext().spanId;

describe('tracing across the batch', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('gives every request a span, and each flush a span linked to exactly the request spans of its events', async () => {
    exporter.reset();
    // OTEL_TRACES_EXPORTER turns request spans on; the in-memory provider above receives them.
    const service = await buildTestService(db.url, { BATCH_MAX_SIZE: '5', BATCH_MAX_WAIT_MS: '60000', OTEL_TRACES_EXPORTER: 'otlp' });
    try {
      for (let i = 0; i < 10; i += 1) {
        const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ tenant: 'traced' }) });
        assert.equal(response.statusCode, 202);
      }
      await waitFor(() => exporter.getFinishedSpans().filter((s) => s.name === 'batch.flush').length === 2, 10_000, 'two flush spans');
      const spans = exporter.getFinishedSpans();
      const requests = spans.filter((s) => s.kind === SpanKind.SERVER && s.attributes['http.route'] === '/event');
      assert.equal(requests.length, 10, `request spans: ${spans.map((s) => s.name).join(', ')}`);
      requests.sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
      const flushes = spans.filter((s) => s.name === 'batch.flush');
      flushes.sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
      flushes.forEach((flush, index) => {
        assert.equal(flush.attributes['batch.size'], 5);
        assert.equal(flush.attributes['batch.reason'], 'size');
        assert.equal(flush.attributes['batch.outcome'], 'stored');
        assert.deepEqual(
          flush.links.map((link) => link.context.spanId).sort(),
          requests.slice(index * 5, index * 5 + 5).map(idOf).sort(),
          `flush ${index} links to the requests of its five events`,
        );
      });
      const writes = spans.filter((s) => s.name === 'batch.write');
      assert.equal(writes.length, 2);
      for (const write of writes) assert.ok(flushes.some((flush) => idOf(flush) === write.parentSpanContext?.spanId), 'each write is a child of a flush');
    } finally {
      await service.close();
    }
  });
});

describe('logs', () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    return { lines, logger: pino({ redact: LOG_REDACTIONS, mixin: traceLogFields }, stream) };
  }

  it('carry the trace and span ids inside a span, and none outside', () => {
    const { lines, logger } = capture();
    logger.info('outside');
    tracer().startActiveSpan('work', (span) => {
      logger.info('inside');
      span.end();
    });
    assert.equal(lines[0]!.trace_id, undefined);
    assert.match(String(lines[1]!.trace_id), /^[0-9a-f]{32}$/);
    assert.match(String(lines[1]!.span_id), /^[0-9a-f]{16}$/);
  });

  it('never print an API key', () => {
    const { lines, logger } = capture();
    const secret = 'aik_0123456789abcdef_supersecret';
    logger.info({ req: { headers: { authorization: `Bearer ${secret}` } }, key: secret }, 'a request');
    assert.ok(!JSON.stringify(lines).includes('supersecret'));
  });
});
