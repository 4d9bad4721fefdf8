import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { systemClock, type Clock } from '../../src/clock.ts';
import { runScript } from '../helpers/run-script.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/** Time that moves only when the test says so (timers stay real: the batcher and the poller run). */
function steppedClock(startMs: number): Clock & { advance(ms: number): void } {
  let nowMs = startMs;
  return { now: () => nowMs, setTimeout: (callback, delayMs) => systemClock.setTimeout(callback, delayMs), clearTimeout: (handle) => systemClock.clearTimeout(handle), advance: (ms) => void (nowMs += ms) };
}

describe('per-tenant rate limits', () => {
  let db: TestDatabase;
  const keys = async (...args: string[]) => {
    const { code, stdout, stderr } = await runScript('keys', args, { DATABASE_URL: db.url });
    assert.equal(code, 0, `npm run keys -- ${args.join(' ')}: ${stderr}`);
    return stdout.trimEnd().split('\n');
  };
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  const post = (service: TestService, key: string, url: '/event' | '/events', payload: unknown) =>
    service.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}` }, payload: payload as Record<string, unknown> });
  const events = (tenant: string, count: number) => Array.from({ length: count }, () => sampleEvent({ tenant }));

  it('429 with the refill time past the limit, 413 past the burst, quiet tenants unaffected, overrides picked up at run time', async () => {
    const noisyKey = (await keys('create', '--tenant', 'noisy')).at(-1)!;
    const quietKey = (await keys('create', '--tenant', 'quiet')).at(-1)!;
    const clock = steppedClock(Date.now());
    const service = await buildTestService(
      db.url,
      { AUTH: 'on', TENANT_RATE_LIMIT: '5', TENANT_RATE_BURST: '5', TENANT_BYTE_RATE_LIMIT: '60000', TENANT_BYTE_BURST: '60000', TENANT_LIMITS_POLL_MS: '100' },
      { clock },
    );
    try {
      for (let i = 0; i < 5; i += 1) assert.equal((await post(service, noisyKey, '/event', sampleEvent({ tenant: 'noisy' }))).statusCode, 202);
      const limited = await post(service, noisyKey, '/event', sampleEvent({ tenant: 'noisy' }));
      assert.equal(limited.statusCode, 429, limited.body);
      assert.equal(limited.headers['content-type'], 'application/problem+json; charset=utf-8');
      assert.equal(limited.json<{ code: string }>().code, 'INGEST_ERR_TENANT_RATE_LIMITED');
      assert.equal(limited.headers['retry-after'], '1', 'one event refills in 0.2 s at 5/s: 1 s, rounded up');
      const bulkLimited = await post(service, noisyKey, '/events', events('noisy', 2));
      assert.equal(bulkLimited.json<{ code: string }>().code, 'INGEST_ERR_TENANT_RATE_LIMITED', 'a bulk with no token left is refused at the gate');

      for (let i = 0; i < 5; i += 1) assert.equal((await post(service, quietKey, '/event', sampleEvent({ tenant: 'quiet' }))).statusCode, 202, 'the quiet tenant has its own bucket');

      clock.advance(1000); // five tokens again
      const tooMany = await post(service, noisyKey, '/events', events('noisy', 6));
      assert.equal(tooMany.statusCode, 413, tooMany.body);
      assert.equal(tooMany.json<{ code: string }>().code, 'INGEST_ERR_TENANT_BURST_EXCEEDED', 'more events than the burst: never an endless 429');
      assert.equal((await post(service, noisyKey, '/events', events('noisy', 3))).statusCode, 202, 'a bulk within its tokens passes');
      const overRate = await post(service, noisyKey, '/events', events('noisy', 3));
      assert.equal(overRate.statusCode, 429, '3 more than the 2 left');
      assert.equal(overRate.headers['retry-after'], '1');

      const tooLarge = await post(service, quietKey, '/event', sampleEvent({ tenant: 'quiet', metadata: { padding: 'x'.repeat(61_000) } }));
      assert.equal(tooLarge.statusCode, 413);
      assert.equal(tooLarge.json<{ code: string }>().code, 'INGEST_ERR_TENANT_BURST_EXCEEDED', 'a body larger than the byte burst, by Content-Length');

      const metrics = await service.app.inject({ method: 'GET', url: '/metrics' });
      assert.match(metrics.body, /ingest_shed_total\{reason="tenant_rate_limited"\} 3/);

      // Run-time override: a burst of 200 lets a 100-event bulk past the 413 once it is read.
      await keys('limit', '--tenant', 'noisy', '--rate', '100', '--burst', '200');
      assert.match((await keys('limits')).join('\n'), /^noisy\t100\t200\t-\t-$/m);
      // Each probe is a second later (so the byte bucket is full again); what it gets accepted is counted.
      let noisyStored = 5 + 3;
      const probe = async () => {
        clock.advance(1000);
        const { statusCode } = await post(service, noisyKey, '/events', events('noisy', 100));
        if (statusCode === 202) noisyStored += 100;
        return statusCode;
      };
      await waitFor(async () => (await probe()) !== 413, 5000, 'the override to be picked up');
      clock.advance(2000); // 200 tokens at 100/s
      assert.equal((await post(service, noisyKey, '/events', events('noisy', 100))).statusCode, 202);
      noisyStored += 100;
      assert.equal((await post(service, quietKey, '/events', events('quiet', 6))).statusCode, 413, "the quiet tenant keeps the default burst");

      await keys('limit', '--tenant', 'noisy', '--clear');
      await waitFor(async () => (await probe()) === 413, 5000, 'the cleared override to be dropped');
      await waitFor(async () => (await db.count("tenant = 'noisy'")) === noisyStored, 10_000, 'the accepted noisy events');
      assert.equal(await db.count("tenant = 'quiet'"), 5);
    } finally {
      await service.close();
    }
  });

  it('refuses before the body: a bulk is checked for the events its size suggests, a refused body is never parsed, a large one is not waited for', async () => {
    const key = (await keys('create', '--tenant', 'flood')).at(-1)!;
    const clock = steppedClock(Date.now());
    const service = await buildTestService(db.url, { AUTH: 'on', TENANT_RATE_LIMIT: '1', TENANT_RATE_BURST: '10', TENANT_LIMITS_POLL_MS: '100' }, { clock });
    try {
      const bulk = JSON.stringify(events('flood', 10));
      const counted = await service.app.inject({ method: 'POST', url: '/events', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, payload: bulk });
      assert.equal(counted.statusCode, 202, counted.body);
      clock.advance(1000); // one token: enough for the gate's old check, not for a bulk of this size
      // The same size of garbage: read, it would be a 400 (and one line, one token: it would pass the limit).
      const garbage = await service.app.inject({ method: 'POST', url: '/events', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-ndjson' }, payload: 'x'.repeat(bulk.length) });
      assert.equal(garbage.statusCode, 429, garbage.body);
      assert.equal(garbage.json<{ code: string }>().code, 'INGEST_ERR_TENANT_RATE_LIMITED', 'refused at the gate by the estimate (~10 events), its body not parsed');
      assert.equal(garbage.headers['retry-after'], '9', 'the refill time of the 9 events missing at 1/s');

      const origin = new URL(await service.app.listen({ host: '127.0.0.1', port: 0 }));
      const head = (length: number) =>
        `POST /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
      /** Send `data`, collect the answer until the server closes the connection (or fail after 10 s). */
      const exchange = async (data: string, sendMore?: (socket: net.Socket) => void, endWhen?: (answer: string) => boolean) => {
        const socket = net.connect(Number(origin.port), '127.0.0.1');
        socket.on('error', () => {}); // a reset while writing: the answer read so far is what counts
        let answer = '';
        socket.on('data', (chunk: Buffer) => {
          answer += chunk.toString('latin1');
          if (endWhen?.(answer)) socket.end();
        });
        await new Promise((resolve) => socket.once('connect', resolve));
        socket.write(data);
        sendMore?.(socket);
        let timer: NodeJS.Timeout | undefined;
        const closed = await Promise.race([
          new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000))),
        ]);
        clearTimeout(timer);
        socket.destroy();
        return { answer, closed };
      };
      // 10 MB declared, not a byte of it sent: answered at once, and the connection closed (not held for the body).
      const declared = await exchange(head(10_000_000));
      assert.ok(declared.closed, 'the server closed the connection without waiting for the 10 MB body');
      assert.match(declared.answer, /^HTTP\/1\.1 429 /);
      assert.match(declared.answer, /\r\nconnection: close\r\n/i);
      assert.match(declared.answer, /"code":"INGEST_ERR_TENANT_RATE_LIMITED"/);
      // A client that goes on writing its 4 MB body after the answer still reads the whole answer (no reset before it).
      const writing = await exchange(head(4_000_000), (socket) => {
        const chunk = 'x'.repeat(64 * 1024);
        let sent = 0;
        const more = () => {
          while (sent < 4_000_000 && !socket.destroyed) {
            sent += chunk.length;
            if (!socket.write(chunk)) return void socket.once('drain', more);
          }
          if (!socket.destroyed) socket.end();
        };
        more();
      });
      assert.match(writing.answer, /^HTTP\/1\.1 429 [^]*\r\n\r\n\{[^]*"code":"INGEST_ERR_TENANT_RATE_LIMITED"[^]*\}$/);
      // A small refused body is discarded and the connection kept: a second request on it is answered.
      const small = JSON.stringify(events('flood', 2));
      const twice = `${head(Buffer.byteLength(small))}${small}`.repeat(2);
      const kept = await exchange(twice, undefined, (answer) => (answer.match(/"code":/g)?.length ?? 0) === 2);
      assert.equal(kept.answer.match(/HTTP\/1\.1 429 /g)?.length, 2, kept.answer);
      assert.doesNotMatch(kept.answer, /connection: close/i);

      // Expect: 100-continue: a refused client is answered without a 100 (it never sends its body)…
      const expectHead = (bearer: string, length: number) => head(length).replace(`Bearer ${key}`, `Bearer ${bearer}`).replace('\r\n\r\n', '\r\nExpect: 100-continue\r\n\r\n');
      const awaited = await exchange(expectHead(key, 2_000_000));
      assert.ok(awaited.closed);
      assert.match(awaited.answer, /^HTTP\/1\.1 429 /, 'the final answer first, no 100 Continue');
      // …and an admitted one gets its 100, then sends the body and is answered.
      const patientKey = (await keys('create', '--tenant', 'patient')).at(-1)!;
      const body = JSON.stringify(events('patient', 2));
      const patient = net.connect(Number(origin.port), '127.0.0.1');
      patient.on('error', () => {});
      let patientAnswer = '';
      let guard: NodeJS.Timeout | undefined;
      const answered = await Promise.race([
        new Promise<boolean>((resolve) => {
          patient.on('data', (chunk: Buffer) => {
            patientAnswer += chunk.toString('latin1');
            if (patientAnswer === 'HTTP/1.1 100 Continue\r\n\r\n') patient.write(body); // the body only once told to
            else if (/\r\n\r\nHTTP\/1\.1 \d{3} [^]*\r\n\r\n\{[^]*\}$/.test(patientAnswer)) resolve(true);
          });
          patient.write(expectHead(patientKey, Buffer.byteLength(body)));
        }),
        new Promise<boolean>((resolve) => (guard = setTimeout(() => resolve(false), 10_000))),
      ]);
      clearTimeout(guard);
      patient.destroy();
      assert.ok(answered, `no final answer after the body: ${patientAnswer}`);
      const admitted = { answer: patientAnswer };
      assert.ok(admitted.answer.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 '), admitted.answer);
    } finally {
      await service.close();
    }
  });

  it('limits off (the default): no refusal however fast a tenant sends, no poller', async () => {
    const key = (await keys('create', '--tenant', 'unlimited')).at(-1)!;
    const service = await buildTestService(db.url, { AUTH: 'on' });
    try {
      assert.equal(service.limitOverrides, undefined);
      for (let i = 0; i < 20; i += 1) assert.equal((await post(service, key, '/event', sampleEvent({ tenant: 'unlimited' }))).statusCode, 202);
      assert.equal((await post(service, key, '/events', events('unlimited', 500))).statusCode, 202);
      await waitFor(async () => (await db.count("tenant = 'unlimited'")) === 520, 10_000, 'every event stored');
    } finally {
      await service.close();
    }
  });

  it('refuses TENANT_RATE_LIMIT with AUTH=off at start: the tenant is known before the body only from the key', async () => {
    await assert.rejects(buildTestService(db.url, { AUTH: 'off', TENANT_RATE_LIMIT: '5' }), /AUTH=on/);
  });
});
