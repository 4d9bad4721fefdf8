import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSigningKeyPair, keyIdOf, loadSigningKey, signCheckpoint } from '../../src/audit/checkpoints.ts';
import { readOutboxEntries, Receiver } from '../helpers/checkpoint-receiver.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { runScript } from '../helpers/run-script.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

/** A sample of one metric series from the service's /metrics, 0 when absent. */
async function metric(service: TestService, series: string): Promise<number> {
  const text = await service.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

const webhookWrites = (result: 'written' | 'failed') => `ingest_audit_checkpoint_writes_total{destination="webhook",result="${result}"}`;

describe('AUDIT_CHECKPOINT_WEBHOOK_URL: signed checkpoints posted to a receiver', () => {
  let db: TestDatabase;
  let dir: string;
  let keyFile: string;
  let publicFile: string;

  before(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(path.join(tmpdir(), 'audit-webhook-'));
    const { privateKeyPem, publicKeyPem } = generateSigningKeyPair();
    keyFile = path.join(dir, 'signing.pem');
    publicFile = path.join(dir, 'signing.pub.pem');
    await writeFile(keyFile, privateKeyPem, { mode: 0o600 });
    await writeFile(publicFile, publicKeyPem);
  });
  after(async () => {
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  const environment = (port: number, extra: Record<string, string> = {}) => ({
    AUDIT_CHAIN: 'on',
    AUDIT_SIGNING_KEY_FILE: keyFile,
    AUDIT_CHECKPOINT_WEBHOOK_URL: `http://127.0.0.1:${port}/audit/checkpoints?source=test`,
    AUDIT_CHECKPOINT_WEBHOOK_TOKEN: 'receiver-secret',
    AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS: '50',
    AUDIT_CHECKPOINT_INTERVAL_MS: '600000',
    BATCH_MAX_SIZE: '50',
    ...extra,
  });

  async function post(service: TestService, tenant: string, events: number): Promise<void> {
    const body = Array.from({ length: events }, () => JSON.stringify(sampleEvent({ id: randomUUID(), tenant }))).join('\n');
    const answer = await service.app.inject({ method: 'POST', url: '/events', payload: body, headers: { 'content-type': 'application/x-ndjson' } });
    assert.equal(answer.statusCode, 202, answer.body);
  }

  const storedIn = async (tenant: string) => db.count(`tenant = '${tenant}'`);
  const headSeq = async (tenant: string) => (await db.pool.query<{ seq: string }>('SELECT seq::text FROM audit_chain_heads WHERE tenant = $1', [tenant])).rows[0]?.seq;
  const verify = (tenant: string, file: string) => runScript('audit', ['verify', '--tenant', tenant, '--checkpoints', file, '--public-key', publicFile], { DATABASE_URL: db.url, DATA_DIR: path.join(dir, 'cli') });

  it('webhook only: the shutdown checkpoint reaches the receiver, and the file it appended verifies intact', async () => {
    const stored = path.join(dir, 'received-e2e.ndjson');
    const receiver = new Receiver(stored);
    const port = await receiver.listen();
    let service: TestService | undefined = await buildTestService(db.url, environment(port));
    try {
      await post(service, 'hook-one', 120);
      await post(service, 'hook-two', 80);
      await waitFor(async () => (await storedIn('hook-one')) === 120 && (await storedIn('hook-two')) === 80, 20_000, 'every event stored');
      assert.equal(receiver.requests.length, 0, 'no trigger yet: nothing posted before shutdown');
      await service.close();
      assert.equal(await metric(service, webhookWrites('written')), 1, 'one POST, at shutdown');
      assert.equal(await metric(service, webhookWrites('failed')), 0);
      assert.equal(await metric(service, 'ingest_audit_unsigned_events'), 0, 'every chained event covered by a delivered checkpoint');
      service = undefined;
      assert.equal(receiver.requests.length, 1);
      const [request] = receiver.requests;
      assert.equal(request!.headers.authorization, 'Bearer receiver-secret');
      assert.equal(request!.headers['content-type'], 'application/x-ndjson');
      assert.match(request!.body, /\n$/, 'every line ends with a newline, as in the file');
      const lines = await receiver.storedLines();
      assert.deepEqual(lines.map((line) => line.tenant).sort(), ['hook-one', 'hook-two']);
      for (const tenant of ['hook-one', 'hook-two']) {
        assert.equal(lines.find((line) => line.tenant === tenant)!.seq, await headSeq(tenant), `${tenant}: the head at shutdown is signed`);
        const result = await verify(tenant, stored);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, new RegExp(`intact: tenant ${tenant}, .* 1 signed checkpoints? match`));
      }
      // The receiver's file is a checkpoint file: a cut tail is caught through it.
      await db.pool.query(`DELETE FROM events e USING audit_chain_links l WHERE l.tenant = 'hook-one' AND l.seq >= 2 AND e.tenant = 'hook-one' AND e.id = ANY(l.ids)`);
      await db.pool.query(`DELETE FROM audit_chain_links WHERE tenant = 'hook-one' AND seq >= 2`);
      await db.pool.query(`UPDATE audit_chain_heads h SET seq = 1, hash = l.hash FROM audit_chain_links l WHERE h.tenant = 'hook-one' AND l.tenant = 'hook-one' AND l.seq = 1`);
      const cut = await verify('hook-one', stored);
      assert.equal(cut.code, 1);
      assert.match(cut.stderr, /NOT INTACT at link 2: tail-truncated/);
    } finally {
      await service?.close();
      await receiver.close();
    }
  });

  it('a receiver that answers 503 (once after storing the body) is retried; each line is stored once', async () => {
    const stored = path.join(dir, 'received-503.ndjson');
    const receiver = new Receiver(stored, [
      { status: 503, store: false, retryAfter: '1' },
      { status: 503, store: true }, // stored, but the answer says otherwise: the retry repeats the lines
    ]);
    const port = await receiver.listen();
    const service = await buildTestService(db.url, environment(port, { AUDIT_CHECKPOINT_EVENTS: '40' }));
    try {
      await post(service, 'hook-retry', 40);
      await waitFor(async () => (await metric(service, webhookWrites('written'))) === 1, 20_000, 'the checkpoint delivered after two 503s');
      assert.equal(await metric(service, webhookWrites('failed')), 2);
      assert.equal(receiver.requests.length, 3);
      assert.equal(receiver.requests[1]!.body, receiver.requests[2]!.body, 'the retry carries the same lines, byte for byte');
      assert.equal(await metric(service, 'ingest_audit_unsigned_events'), 0);
    } finally {
      await service.close();
      await receiver.close();
    }
    const lines = await receiver.storedLines();
    assert.deepEqual(
      lines.map((line) => `${line.tenant} ${line.seq}`),
      [`hook-retry ${await headSeq('hook-retry')}`],
      'stored once (the receiver deduped the repeat); nothing new to sign at shutdown',
    );
    const result = await verify('hook-retry', stored);
    assert.equal(result.code, 0, result.stderr);
  });

  it('a receiver down during the run gets only the newest head of each tenant once it is back', async () => {
    const stored = path.join(dir, 'received-down.ndjson');
    const receiver = new Receiver(stored);
    const proxy = new TcpProxy({ host: '127.0.0.1', port: await receiver.listen() });
    await proxy.start();
    await proxy.cut();
    const service = await buildTestService(db.url, environment(proxy.port, { AUDIT_CHECKPOINT_EVENTS: '30' }));
    try {
      for (let round = 1; round <= 3; round += 1) {
        await post(service, 'hook-down', 30);
        await waitFor(async () => (await storedIn('hook-down')) === round * 30, 20_000, `round ${round} stored`);
        await waitFor(async () => (await metric(service, 'ingest_audit_chained_events_total')) >= round * 30, 10_000, `round ${round} chained`);
        await service.checkpoints!.idle(); // signed and handed to the webhook
        // The next try (after a backoff) takes the round's line into the request, replacing the last round's.
        const superseded = 'ingest_audit_checkpoints_superseded_total{destination="webhook"}';
        await waitFor(async () => (await metric(service, superseded)) === round - 1, 10_000, `round ${round}: the older line replaced`);
        await waitFor(async () => (await metric(service, webhookWrites('failed'))) >= round, 10_000, `round ${round}: a POST failed`);
      }
      assert.equal(await metric(service, webhookWrites('written')), 0, 'nothing reached the receiver');
      assert.equal(receiver.requests.length, 0);
      // Updated at each failed try; the one after round 3's line was folded in reports all of it.
      await waitFor(async () => (await metric(service, 'ingest_audit_unsigned_events')) === 90, 10_000, 'no stored signature covers any of the 90 events');
      await proxy.restore();
      await waitFor(async () => (await metric(service, webhookWrites('written'))) === 1, 20_000, 'delivered once the receiver is back');
      assert.equal(await metric(service, 'ingest_audit_unsigned_events'), 0);
      assert.equal(receiver.requests.length, 1, 'one POST carried it');
      assert.deepEqual(
        (await receiver.storedLines()).map((line) => `${line.tenant} ${line.seq}`),
        [`hook-down ${await headSeq('hook-down')}`],
        'only the newest head',
      );
    } finally {
      await service.close();
      await proxy.stop();
      await receiver.close();
    }
    const result = await verify('hook-down', stored);
    assert.equal(result.code, 0, result.stderr);
  });

  /** The tenant and seq of each line in DATA_DIR's outbox; undefined when there is no outbox file. */
  const outboxOf = (dataDir: string) => readOutboxEntries(path.join(dataDir, 'audit-checkpoints-outbox.ndjson'));

  it('a receiver down at shutdown: the lines stay in the outbox, a newer head replaces its tenant’s at the next start, and all are delivered once it is back', async () => {
    const stored = path.join(dir, 'received-outbox.ndjson');
    const dataDir = path.join(dir, 'data-outbox');
    const receiver = new Receiver(stored);
    const proxy = new TcpProxy({ host: '127.0.0.1', port: await receiver.listen() });
    await proxy.start();
    await proxy.cut();
    const env = environment(proxy.port, { AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_MS: '300', AUDIT_CHECKPOINT_EVENTS: '30' });
    let service: TestService | undefined;
    try {
      service = await buildTestService(db.url, env, { dataDir });
      await post(service, 'outbox-one', 60);
      await post(service, 'outbox-two', 40);
      await waitFor(async () => (await storedIn('outbox-one')) === 60 && (await storedIn('outbox-two')) === 40, 20_000, 'every event stored');
      await service.close();
      const first = service;
      service = undefined;
      const headsAtStop = [`outbox-one ${await headSeq('outbox-one')}`, `outbox-two ${await headSeq('outbox-two')}`];
      assert.deepEqual(await outboxOf(dataDir), headsAtStop, 'the newest head of each tenant waits in DATA_DIR');
      assert.equal(await metric(first, 'ingest_audit_checkpoint_outbox_lines'), 2);
      assert.equal(await metric(first, webhookWrites('written')), 0);
      assert.equal(receiver.requests.length, 0);

      // Next start, the receiver still away: a newer head of outbox-one replaces the one restored.
      service = await buildTestService(db.url, env, { dataDir });
      assert.equal(await metric(service, 'ingest_audit_checkpoint_outbox_lines'), 2, 'found at start');
      await post(service, 'outbox-one', 30);
      await waitFor(async () => (await storedIn('outbox-one')) === 90, 20_000, 'the new events stored');
      const newer = `outbox-one ${await headSeq('outbox-one')}`;
      assert.notEqual(newer, headsAtStop[0]);
      await waitFor(async () => (await outboxOf(dataDir))?.join() === [newer, headsAtStop[1]].join(), 20_000, 'the newer head in the outbox, in place of the older');

      await proxy.restore();
      await waitFor(async () => (await outboxOf(dataDir)) === undefined, 20_000, 'delivered: the outbox removed');
      // The gauge follows once the removal is durable (the directory fsynced), a moment after the file is gone.
      await waitFor(async () => (await metric(service!, 'ingest_audit_checkpoint_outbox_lines')) === 0, 10_000, 'the outbox gauge at 0');
      assert.ok((await metric(service, webhookWrites('written'))) >= 1);
      assert.deepEqual(
        (await receiver.storedLines()).map((line) => `${line.tenant} ${line.seq}`).sort(),
        [newer, headsAtStop[1]],
        'each tenant’s newest head; the older line of outbox-one was never sent',
      );
      await service.close();
      service = undefined;
      assert.equal(await outboxOf(dataDir), undefined, 'nothing left for a next start');
    } finally {
      await service?.close();
      await proxy.stop();
      await receiver.close();
      await rm(dataDir, { recursive: true, force: true });
    }
    for (const tenant of ['outbox-one', 'outbox-two']) {
      const result = await verify(tenant, stored);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`intact: tenant ${tenant}, .* 1 signed checkpoint`));
    }
  });

  it('a corrupt outbox at start: counted, set aside as .corrupt-<time>, the service starts and delivers its good line', async () => {
    const stored = path.join(dir, 'received-corrupt.ndjson');
    const dataDir = path.join(dir, 'data-corrupt');
    await mkdir(dataDir, { recursive: true });
    const key = await loadSigningKey({ file: keyFile });
    const good = `${JSON.stringify(signCheckpoint(key, keyIdOf(key), { tenant: 'outbox-salvaged', seq: 3n, hash: Buffer.alloc(32, 7) }, new Date().toISOString()))}\n`;
    const text = `${good}{"v":1,"tenant":"outbox-torn","seq":"4","ha\n`;
    await writeFile(path.join(dataDir, 'audit-checkpoints-outbox.ndjson'), text);
    const receiver = new Receiver(stored);
    const port = await receiver.listen();
    let service: TestService | undefined;
    try {
      service = await buildTestService(db.url, environment(port), { dataDir });
      assert.equal(await metric(service, 'ingest_audit_checkpoint_outbox_failures_total{reason="corrupt"}'), 1);
      const aside = (await readdir(dataDir)).filter((name) => name.startsWith('audit-checkpoints-outbox.ndjson.corrupt-'));
      assert.equal(aside.length, 1, 'set aside once');
      assert.equal(await readFile(path.join(dataDir, aside[0]!), 'utf8'), text, 'as it was');
      await waitFor(async () => (await receiver.storedLines()).length === 1, 20_000, 'the good line delivered');
      assert.equal(receiver.requests[0]!.body, good, 'byte for byte');
      await waitFor(async () => (await outboxOf(dataDir)) === undefined, 10_000, 'the outbox removed once delivered');
      // The service works as ever.
      await post(service, 'outbox-after-corrupt', 10);
      await waitFor(async () => (await storedIn('outbox-after-corrupt')) === 10, 20_000, 'events stored');
      await service.close();
      service = undefined;
      assert.ok((await receiver.storedLines()).some((line) => line.tenant === 'outbox-after-corrupt'), 'the shutdown checkpoint delivered');
    } finally {
      await service?.close();
      await receiver.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('a refusal (404) is counted apart, retried, and the line delivered once the receiver takes it', async () => {
    const stored = path.join(dir, 'received-refused.ndjson');
    const receiver = new Receiver(stored, [{ status: 404, store: false }]);
    const port = await receiver.listen();
    const service = await buildTestService(db.url, environment(port, { AUDIT_CHECKPOINT_EVENTS: '20' }));
    try {
      await post(service, 'hook-refused', 20);
      await waitFor(async () => (await metric(service, webhookWrites('written'))) === 1, 20_000, 'delivered after the refusal');
      assert.equal(await metric(service, 'ingest_audit_checkpoint_webhook_refusals_total'), 1);
      assert.equal(await metric(service, webhookWrites('failed')), 1, 'a refusal is a failed write too (the alert)');
      assert.equal(receiver.requests.length, 2);
      assert.equal(receiver.requests[0]!.body, receiver.requests[1]!.body, 'the same line again');
    } finally {
      await service.close();
      await receiver.close();
    }
    const result = await verify('hook-refused', stored);
    assert.equal(result.code, 0, result.stderr);
  });
});
