import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { classifyFailure, isConnectionFailure } from '../../src/db/failure-class.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { chunkLines } from '../../src/forward/chunks.ts';
import { ForwardClient, retryAfterMs } from '../../src/forward/forward-client.ts';
import { ndjsonLineOfRow } from '../../src/forward/ndjson-line.ts';
import { prepareEvent } from '../../src/http/prepare-event.ts';
import { HttpForwardSink } from '../../src/sink/http-forward-sink.ts';
import type { DeadLetterWriter } from '../../src/sink/poison-splitting-sink.ts';
import { sampleEvent } from '../helpers/service.ts';

const RECEIVED_AT = '2026-11-22T05:00:01.000Z';

function queued(fields: Record<string, unknown> = {}): QueuedEvent {
  const prepared = prepareEvent(sampleEvent({ id: randomUUID(), ...fields }), RECEIVED_AT);
  assert.ok(prepared.ok);
  return prepared.event;
}

interface Received {
  readonly headers: IncomingMessage['headers'];
  readonly lines: string[];
  readonly wireBytes: number;
}

type Answer = { status: number; body?: unknown; headers?: Record<string, string> };

/** A receiver on loopback that answers each POST /events with the next scripted answer (or a 202 of every line). */
class ScriptedReceiver {
  readonly received: Received[] = [];
  answers: ((lines: string[]) => Answer)[] = [];
  #server: Server | undefined;

  async start(): Promise<number> {
    this.#server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const wire = Buffer.concat(chunks);
        const text = (request.headers['content-encoding'] === 'gzip' ? gunzipSync(wire) : wire).toString('utf8');
        const lines = text.split('\n').filter((line) => line.length > 0);
        this.received.push({ headers: request.headers, lines, wireBytes: wire.length });
        const next = this.answers.shift() ?? ((all: string[]): Answer => ({ status: 202, body: { accepted: all.map((_, index) => ({ index, id: 'x' })), rejected: [] } }));
        const answer = next(lines);
        response.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        response.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()));
  }
}

class RecordingDeadLetter implements DeadLetterWriter {
  readonly written: { id: string; message: string }[] = [];
  write(events: readonly QueuedEvent[], error: unknown): Promise<void> {
    for (const event of events) this.written.push({ id: event.id, message: (error as Error).message });
    return Promise.resolve();
  }
}

const signal = () => new AbortController().signal;

/** The real client, recording each Retry-After the sink asks it to wait (and waiting it, capped). */
class RecordingClient extends ForwardClient {
  readonly waits: number[] = [];
  override waitRetryAfter(ms: number, abort: AbortSignal): Promise<void> {
    this.waits.push(ms);
    return super.waitRetryAfter(ms, abort);
  }
}

describe('ndjsonLineOfRow', () => {
  it('gives back the event prepareEvent took: prepared again on the receiver, the row is the same but for received_at', () => {
    const cases = [
      sampleEvent({ id: randomUUID() }),
      { id: randomUUID(), tenant: 'a.b-c', occurred_at: '2026-01-01T00:00:00+02:00', action: 'x\ty\nz\\', actor: { id: 'u' } },
      { id: randomUUID(), tenant: 't', occurred_at: '2026-01-01T00:00:00Z', action: 'a', actor: { id: 'u', name: 'Ü "q"' }, target: { type: 'doc' }, metadata: { deep: [1, { n: null }], s: '\u2028' } },
    ];
    for (const event of cases) {
      const first = prepareEvent(event, RECEIVED_AT);
      assert.ok(first.ok);
      const again = prepareEvent(JSON.parse(ndjsonLineOfRow(first.event.row)), '2027-01-01T00:00:00.000Z');
      assert.ok(again.ok, ndjsonLineOfRow(first.event.row));
      assert.equal(again.event.row, first.event.row.replace(RECEIVED_AT, '2027-01-01T00:00:00.000Z'));
    }
  });
});

describe('chunkLines', () => {
  it('cuts by count and by bytes, keeps order, and sends a line above the byte limit alone', () => {
    const lines = ['a'.repeat(9), 'b'.repeat(9), 'c'.repeat(9), 'd'.repeat(40), 'e'];
    const chunks = chunkLines(lines, { maxEvents: 2, maxBytes: 25 });
    assert.deepEqual(chunks.map((chunk) => chunk.indexes), [[0, 1], [2], [3], [4]]);
    assert.deepEqual(chunks.map((chunk) => chunk.bytes), [20, 10, 41, 2]);
    assert.equal(chunks[0]!.body, `${'a'.repeat(9)}\n${'b'.repeat(9)}\n`);
  });
});

describe('retryAfterMs', () => {
  it('reads seconds and HTTP dates, and ignores anything else', () => {
    assert.equal(retryAfterMs('3'), 3000);
    assert.equal(retryAfterMs(new Date(10_000).toUTCString(), 4_000), 6000);
    assert.equal(retryAfterMs('soon'), undefined);
    assert.equal(retryAfterMs(undefined), undefined);
  });
});

describe('HttpForwardSink against a scripted receiver', () => {
  const receiver = new ScriptedReceiver();
  let client: RecordingClient;
  let deadLetter: RecordingDeadLetter;
  let sink: HttpForwardSink;
  before(async () => {
    const port = await receiver.start();
    client = new RecordingClient({ url: `http://127.0.0.1:${port}/`, apiKey: 'k-123', connections: 1, timeoutMs: 2000, gzip: true, maxRetryAfterMs: 50 });
  });
  after(async () => {
    await client.close();
    await receiver.stop();
  });
  beforeEach(() => {
    client.waits.length = 0;
    receiver.received.length = 0;
    receiver.answers = [];
    deadLetter = new RecordingDeadLetter();
    sink = new HttpForwardSink(client, { maxEvents: 3, maxBytes: 1024 * 1024, deadLetter });
  });

  it('posts gzip NDJSON with the key, in requests of at most maxEvents, and counts what was accepted', async () => {
    const batch = Array.from({ length: 7 }, () => queued());
    const result = await sink.write(batch, { signal: signal() });
    assert.deepEqual(result, { inserted: 7, deadLettered: [] });
    assert.deepEqual(receiver.received.map((request) => request.lines.length), [3, 3, 1]);
    const [first] = receiver.received;
    assert.equal(first!.headers['content-encoding'], 'gzip');
    assert.equal(first!.headers['content-type'], 'application/x-ndjson');
    assert.equal(first!.headers.authorization, 'Bearer k-123');
    assert.deepEqual(receiver.received.flatMap((request) => request.lines.map((line) => (JSON.parse(line) as { id: string }).id)), batch.map((event) => event.id));
  });

  it("dead-letters the lines a 202 lists as rejected, with the receiver's reasons, by their index in the batch", async () => {
    const batch = Array.from({ length: 5 }, () => queued());
    receiver.answers = [
      () => ({ status: 202, body: { accepted: [{ index: 0 }, { index: 2 }], rejected: [{ index: 1, errors: [{ path: 'action', message: 'too long' }] }] } }),
      () => ({ status: 202, body: { accepted: [{ index: 1 }], rejected: [{ index: 0, errors: [{ path: 'actor.id', message: 'required' }] }] } }),
    ];
    const result = await sink.write(batch, { signal: signal() });
    assert.deepEqual(result, { inserted: 3, deadLettered: [1, 3] });
    assert.deepEqual(deadLetter.written.map((item) => item.id), [batch[1]!.id, batch[3]!.id]);
    assert.match(deadLetter.written[0]!.message, /action: too long/);
  });

  it('dead-letters every line of a 400 whose issues name each line; a 400 that does not is a permanent refusal of the request (split by the chain)', async () => {
    const batch = Array.from({ length: 2 }, () => queued());
    const issues = [{ path: '[0].action', message: 'bad' }, { path: '[1].tenant', message: 'bad too' }];
    receiver.answers = [() => ({ status: 400, body: { code: 'INGEST_ERR_VALIDATION', detail: '2 of 2 events are invalid', errors: issues } })];
    assert.deepEqual(await sink.write(batch, { signal: signal() }), { inserted: 0, deadLettered: [0, 1] });
    receiver.answers = [() => ({ status: 400, body: { code: 'INGEST_ERR_VALIDATION', errors: [issues[0]] } })];
    await assert.rejects(sink.write(batch, { signal: signal() }), (error: Error & { code?: string }) => error.code === 'FORWARD_ERR_REFUSED' && classifyFailure(error) === 'permanent');
    receiver.answers = [() => ({ status: 400, body: { code: 'INGEST_ERR_VALIDATION', errors: [issues[0], { path: '[5].action', message: 'not a line of this request' }] } })];
    await assert.rejects(sink.write(batch, { signal: signal() }), (error: Error & { code?: string }) => error.code === 'FORWARD_ERR_REFUSED');
    assert.equal(deadLetter.written.length, 2, 'only the first answer dead-lettered anything');
  });

  it('maps answers to failure kinds: 429 and 503 transient after Retry-After, 5xx and no connection transient, 401/404 transient (never dead-lettered), 403/413 permanent', async () => {
    const batch = [queued()];
    const expect = async (answer: Answer, code: string, kind: 'transient' | 'permanent', probe: boolean) => {
      receiver.answers = [() => answer];
      await assert.rejects(sink.write(batch, { signal: signal() }), (error: Error & { code?: string }) => {
        assert.equal(error.code, code, `${answer.status}`);
        assert.equal(classifyFailure(error), kind, `${answer.status}`);
        assert.equal(isConnectionFailure(error), probe, `${answer.status}: recovery by probe`);
        return true;
      });
    };
    await expect({ status: 429, headers: { 'retry-after': '1' } }, 'FORWARD_ERR_THROTTLED', 'transient', true);
    await expect({ status: 503, headers: { 'retry-after': '2' } }, 'FORWARD_ERR_UNAVAILABLE', 'transient', true);
    await expect({ status: 500, headers: { 'retry-after': '3' } }, 'FORWARD_ERR_UNAVAILABLE', 'transient', true);
    await expect({ status: 429 }, 'FORWARD_ERR_THROTTLED', 'transient', true);
    assert.deepEqual(client.waits, [1000, 2000], "Retry-After is waited on a 429 and a 503 (capped by maxRetryAfterMs), not on a 500's");
    await expect({ status: 401 }, 'FORWARD_ERR_MISCONFIGURED', 'transient', false);
    await expect({ status: 404 }, 'FORWARD_ERR_MISCONFIGURED', 'transient', false);
    await expect({ status: 403, body: { code: 'INGEST_ERR_TENANT_MISMATCH' } }, 'FORWARD_ERR_REFUSED', 'permanent', false);
    await expect({ status: 413 }, 'FORWARD_ERR_REFUSED', 'permanent', false);
    await expect({ status: 202, body: { unexpected: true } }, 'FORWARD_ERR_UNAVAILABLE', 'transient', true);
    assert.equal(deadLetter.written.length, 0, 'nothing dead-lettered for a refusal of the whole request');
    const nobody = new ForwardClient({ url: 'http://127.0.0.1:1', apiKey: undefined, connections: 1, timeoutMs: 1000, gzip: false, maxRetryAfterMs: 0 });
    try {
      await assert.rejects(new HttpForwardSink(nobody, { maxEvents: 10, maxBytes: 1024, deadLetter }).write(batch, { signal: signal() }), (error: Error & { code?: string }) => error.code === 'FORWARD_ERR_UNAVAILABLE' && isConnectionFailure(error));
    } finally {
      await nobody.close();
    }
  });

  it('a committed receiver (201/207): stored counts, rejected is its own dead letter, any other outcome fails the write for a retry', async () => {
    const batch = Array.from({ length: 3 }, () => queued());
    receiver.answers = [() => ({ status: 207, body: { accepted: [{ index: 0, outcome: 'stored' }, { index: 1, outcome: 'rejected' }, { index: 2, outcome: 'stored' }], rejected: [] } })];
    assert.deepEqual(await sink.write(batch, { signal: signal() }), { inserted: 2, deadLettered: [] });
    receiver.answers = [() => ({ status: 207, body: { accepted: [{ index: 0, outcome: 'stored' }, { index: 1, outcome: 'failed' }, { index: 2, outcome: 'stored' }], rejected: [] } })];
    await assert.rejects(sink.write(batch, { signal: signal() }), (error: Error & { code?: string }) => error.code === 'FORWARD_ERR_UNAVAILABLE');
  });
});
