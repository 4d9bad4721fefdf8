/**
 * record(event, { signal }) and flush({ signal }): an abort stops the caller's wait, never a
 * delivery already under way. Before the event is taken (the signal already aborted, or aborting
 * while record() waits for room) nothing of it is buffered or sent; once it is taken it is still
 * delivered. The paths before the buffer without a service (nothing may be sent); the rest against
 * the real service (in this process, real embedded PostgreSQL), its requests held at a gate the test
 * opens, and the batches' linger on the fake clock: no sleeps, no timing assertions.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/database.ts';
import { createFakeClock } from '../../../test/helpers/fake-clock.ts';
import { buildTestService, waitFor, type TestService } from '../../../test/helpers/service.ts';
import { AbortWatchers } from '../src/abort-watchers.ts';
import { AuditClient, AuditClientAbortError, type AuditClientOptions, type RecordResult, type RefusedResult } from '../src/index.ts';
import { auditEvent, createKey, rowsOf } from './helpers.ts';

const listeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

/** The AuditClientAbortError a promise rejected with (fails if it resolved, or rejected otherwise). */
async function abortErrorOf(promise: Promise<unknown>): Promise<AuditClientAbortError> {
  const error = await promise.then(() => assert.fail('expected an abort'), (caught: unknown) => caught);
  assert.ok(error instanceof AuditClientAbortError, String(error));
  assert.equal(error.code, 'AUDIT_CLIENT_ERR_ABORTED');
  assert.equal(error.name, 'AbortError');
  return error;
}

/**
 * The real fetch behind a gate: while shut, each request waits (in flight, from the client's side)
 * before it reaches the service. `sent` holds the ids of each request, in the order sent.
 */
function gatedFetch(): { fetch: typeof fetch; sent: string[][]; open: () => void } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const sent: string[][] = [];
  return {
    sent,
    open: () => open(),
    fetch: async (input, init) => {
      const ndjson = gunzipSync(init?.body as Uint8Array).toString('utf8');
      sent.push(ndjson.trimEnd().split('\n').map((line) => (JSON.parse(line) as { id: string }).id));
      await gate;
      return fetch(input, init);
    },
  };
}

describe('AuditClient with an AbortSignal, before the event is taken (no service)', () => {
  it('a signal already aborted: record() rejects at once (AUDIT_CLIENT_ERR_ABORTED, an AbortError with the reason as cause, taken: false); nothing buffered, sent or listened to', async () => {
    let requests = 0;
    const client = new AuditClient({
      url: 'http://127.0.0.1:9',
      flushOnExit: false,
      fetch: () => {
        requests += 1;
        return Promise.reject(new Error('no request expected'));
      },
    });
    const reason = new Error('the caller gave up');
    const signal = AbortSignal.abort(reason);
    const recorded = client.record(auditEvent(), { signal });
    assert.equal(client.pending, 0, 'not buffered');
    const error = await abortErrorOf(recorded);
    assert.equal(error.cause, reason);
    assert.equal(error.taken, false);
    assert.equal(listeners(signal), 0);

    // The default reason (a DOMException named AbortError) is carried the same way.
    const controller = new AbortController();
    controller.abort();
    assert.equal((await abortErrorOf(client.record(auditEvent(), { signal: controller.signal }))).cause, controller.signal.reason);
    // flush() with an aborted signal rejects at once too; it had nothing to wait for anyway.
    assert.equal((await abortErrorOf(client.flush({ signal }))).taken, true);

    await client.close();
    assert.equal(requests, 0, 'nothing was sent');
  });

  it('AbortWatchers: one listener per signal however many watch it, removed with the last watcher or by the abort; each watcher called once', () => {
    const watchers = new AbortWatchers();
    const controller = new AbortController();
    const calls: number[] = [];
    const stops = Array.from({ length: 100 }, (_, index) => watchers.watch(controller.signal, () => calls.push(index)));
    assert.equal(listeners(controller.signal), 1);
    for (const stop of stops.slice(1)) stop();
    assert.equal(listeners(controller.signal), 1, 'one watcher left');
    stops[0]!();
    stops[0]!();
    assert.equal(listeners(controller.signal), 0, 'the last watcher gone');

    const stopLate = watchers.watch(controller.signal, () => calls.push(-1));
    watchers.watch(controller.signal, () => calls.push(-2));
    controller.abort();
    assert.deepEqual(calls, [-1, -2], 'only the watchers still watching, once each');
    assert.equal(listeners(controller.signal), 0);
    stopLate();
    assert.equal(listeners(controller.signal), 0);
  });
});

describe('AuditClient with an AbortSignal, against the real service', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  const storedIds = async (tenant: string) => {
    const result = await db.pool.query<{ id: string }>('SELECT id FROM events WHERE tenant = $1', [tenant]);
    return new Set(result.rows.map((row) => row.id));
  };
  /** The service (ACK_MODE=committed unless told: a `stored` answer is a row), a key for `tenant`, and a client on it. */
  async function setUp(tenant: string, options: Partial<AuditClientOptions>, environment: Record<string, string> = { ACK_MODE: 'committed' }) {
    const key = await createKey(db, tenant);
    const service: TestService = await buildTestService(db.url, { AUTH: 'on', ...environment });
    const url = await service.app.listen({ host: '127.0.0.1', port: 0 });
    const client = new AuditClient({ url, apiKey: key, flushOnExit: false, ...options });
    return {
      client,
      tearDown: async () => {
        await client.close();
        await service.close();
      },
    };
  }

  it('aborted while waiting for room (whenFull wait): the call leaves the FIFO and rejects (taken: false), its listener gone; the event is never sent; the live waiters behind it go in, in order', async () => {
    const gated = gatedFetch();
    // One event per request, one request at a time, two buffered: the fourth record() waits.
    const { client, tearDown } = await setUp('abort-wait', { maxBatchSize: 1, concurrency: 1, capacity: 2, whenFull: 'wait', fetch: gated.fetch });
    try {
      const taken = [client.record(auditEvent()), client.record(auditEvent()), client.record(auditEvent())];
      assert.equal(client.pending, 3, 'one in flight, two buffered: full');
      await waitFor(() => gated.sent.length === 1, 10_000, 'the first request sent');
      // 200 callers wait for room, each with a signal of its own; all but two give up.
      const controllers = Array.from({ length: 200 }, () => new AbortController());
      const waiting = controllers.map((controller) => client.record(auditEvent(), { signal: controller.signal }));
      assert.equal(client.pending, 3, 'a call waiting for room has not taken its event');
      const live = new Set([50, 150]);
      controllers.forEach((controller, index) => {
        if (!live.has(index)) controller.abort(new Error(`caller ${index} gone`));
      });
      const abortedIds: string[] = [];
      for (const [index, promise] of waiting.entries()) {
        if (live.has(index)) continue;
        const error = await abortErrorOf(promise);
        assert.equal(error.taken, false);
        assert.equal((error.cause as Error).message, `caller ${index} gone`);
        assert.ok(error.id !== undefined);
        abortedIds.push(error.id);
        assert.equal(listeners(controllers[index]!.signal), 0, 'no listener left behind');
      }
      assert.equal(client.pending, 3, 'nothing of theirs was buffered');
      assert.equal(gated.sent.length, 1, 'still only the first request sent');

      gated.open();
      const results: RecordResult[] = await Promise.all([...taken, waiting[50]!, waiting[150]!]);
      assert.deepEqual(new Set(results.map((result) => result.status)), new Set(['stored']));
      assert.deepEqual(gated.sent, results.map((result) => [result.id]), 'sent: the three taken, then the two live waiters in their order; no aborted one');
      for (const index of live) assert.equal(listeners(controllers[index]!.signal), 0);
      const stored = await storedIds('abort-wait');
      assert.deepEqual(stored, new Set(results.map((result) => result.id)));
      assert.deepEqual(abortedIds.filter((id) => stored.has(id)), []);
    } finally {
      await tearDown();
    }
  });

  it('aborted once the event is taken (in a request, or buffered): record() rejects (taken: true) but the event is still delivered, counted by pending, waited for by flush() and close(), its refusal still reported', async () => {
    const gated = gatedFetch();
    const clock = createFakeClock();
    const refused: RefusedResult[] = [];
    // A linger of a minute on the fake clock: a batch leaves when the test moves time, or at close().
    const { client, tearDown } = await setUp('abort-taken', { maxWaitMs: 60_000, clock, fetch: gated.fetch, onRefused: (result) => refused.push(result) });
    try {
      // In a request: sent, its answer held at the gate, then aborted.
      const inFlight = new AbortController();
      const sending = client.record(auditEvent(), { signal: inFlight.signal });
      await clock.tickAsync(60_000);
      await waitFor(() => gated.sent.length === 1, 10_000, 'the request sent');
      inFlight.abort(new Error('request gone'));
      const sentError = await abortErrorOf(sending);
      assert.equal(sentError.taken, true);
      assert.deepEqual(gated.sent, [[sentError.id]]);
      assert.equal(client.pending, 1, 'still counted: its delivery goes on');
      assert.equal(listeners(inFlight.signal), 0);
      const flushed = client.flush();
      gated.open();
      await flushed;
      assert.equal(client.pending, 0);
      assert.deepEqual(await storedIds('abort-taken'), new Set([sentError.id]), 'stored although its record() was aborted');

      // Buffered, not sent yet: aborted, and still sent by close().
      const first = new AbortController();
      const second = new AbortController();
      const valid = client.record(auditEvent(), { signal: first.signal });
      const invalid = client.record(auditEvent({ occurred_at: 'yesterday' }), { signal: second.signal });
      assert.equal(client.pending, 2);
      first.abort();
      second.abort();
      const validError = await abortErrorOf(valid);
      const invalidError = await abortErrorOf(invalid);
      assert.deepEqual([validError.taken, invalidError.taken], [true, true]);
      assert.equal(gated.sent.length, 1, 'neither was sent before the abort');
      assert.equal(client.pending, 2, 'both still counted');
      assert.deepEqual([listeners(first.signal), listeners(second.signal)], [0, 0]);
      await client.close();
      assert.equal(client.pending, 0);
      assert.deepEqual(gated.sent.slice(1), [[validError.id, invalidError.id]], 'close() sent both');
      await new Promise<void>((resolve) => setImmediate(resolve)); // onRefused runs in a microtask of its own
      assert.deepEqual(refused.map((result) => [result.id, result.code]), [[invalidError.id, 'INGEST_ERR_VALIDATION']], 'its refusal reached onRefused');
      assert.deepEqual(await storedIds('abort-taken'), new Set([sentError.id, validError.id]));
    } finally {
      await tearDown();
    }
  });

  it('one shared signal aborting 100 calls (10 in a request, 20 buffered, 70 waiting for room): the 30 taken reject (taken: true) and are stored, the 70 reject (taken: false) and are never sent', async () => {
    const gated = gatedFetch();
    const { client, tearDown } = await setUp('abort-shared', { maxBatchSize: 10, concurrency: 1, capacity: 20, whenFull: 'wait', fetch: gated.fetch });
    try {
      const shutdown = new AbortController();
      const calls = Array.from({ length: 100 }, () => client.record(auditEvent(), { signal: shutdown.signal }));
      assert.equal(client.pending, 30);
      assert.equal(listeners(shutdown.signal), 1, 'one listener for the hundred calls');
      shutdown.abort(new Error('worker stopping'));
      const errors = await Promise.all(calls.map((call) => abortErrorOf(call)));
      assert.equal(listeners(shutdown.signal), 0);
      const takenIds = errors.filter((error) => error.taken).map((error) => error.id!);
      const notTakenIds = errors.filter((error) => !error.taken).map((error) => error.id!);
      assert.deepEqual([takenIds.length, notTakenIds.length], [30, 70]);
      assert.deepEqual(errors.slice(0, 30).map((error) => error.taken), Array.from({ length: 30 }, () => true), 'the first 30 were taken');
      gated.open();
      await client.flush();
      assert.equal(client.pending, 0);
      assert.deepEqual(gated.sent.flat(), takenIds, 'sent: exactly the taken ones');
      assert.deepEqual(await storedIds('abort-shared'), new Set(takenIds));
    } finally {
      await tearDown();
    }
  });

  it('one long-lived signal for 10,000 concurrent records, most waiting for room: at most one abort listener, none once they settle, no MaxListenersExceededWarning; every event stored', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    // fullWaitMs well above what 10,000 events take on a loaded machine: this test is about listeners.
    const { client, tearDown } = await setUp('abort-long-lived', { maxBatchSize: 250, capacity: 500, whenFull: 'wait', fullWaitMs: 600_000 }, {});
    try {
      const lifetime = new AbortController();
      const count = 10_000;
      const calls = Array.from({ length: count }, () => client.record(auditEvent(), { signal: lifetime.signal }));
      const flushed = client.flush({ signal: lifetime.signal });
      assert.equal(listeners(lifetime.signal), 1, 'one listener for all of them');
      const results = await Promise.all(calls);
      await flushed;
      assert.deepEqual(new Set(results.map((result) => result.status)), new Set(['accepted']));
      assert.equal(listeners(lifetime.signal), 0, 'none once they settled');
      await new Promise<void>((resolve) => setImmediate(resolve)); // process warnings are emitted on a later tick
      assert.deepEqual(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map((warning) => warning.message), []);
      await waitFor(async () => (await rowsOf(db, 'abort-long-lived')).count >= count, 60_000, `${count} rows`);
      assert.deepEqual(await rowsOf(db, 'abort-long-lived'), { count, distinct: count });
    } finally {
      process.off('warning', onWarning);
      await tearDown();
    }
  });
});
