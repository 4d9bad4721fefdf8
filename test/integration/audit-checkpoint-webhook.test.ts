import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSigningKeyPair, type CheckpointLine } from '../../src/audit/checkpoints.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { runScript } from '../helpers/run-script.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

/** How the receiver answers one request: the status, and whether it stored the body before answering. */
interface Answer {
  readonly status: number;
  readonly store: boolean;
  readonly retryAfter?: string;
}

/**
 * A real receiver: node:http on 127.0.0.1, appending each body to a file — as a receiver should,
 * deduping lines by (tenant, seq, key), so a retried POST stores nothing twice. `answers` script
 * the first requests; the rest get 200 and are stored.
 */
class Receiver {
  readonly requests: { headers: IncomingHttpHeaders; body: string; status: number }[] = [];
  readonly #seen = new Set<string>();
  readonly #server: Server;
  readonly #file: string;
  readonly #answers: Answer[];

  constructor(file: string, answers: Answer[] = []) {
    this.#file = file;
    this.#answers = [...answers];
    this.#server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const answer = this.#answers.shift() ?? { status: 200, store: true };
        this.requests.push({ headers: request.headers, body, status: answer.status });
        void (answer.store ? this.#store(body) : Promise.resolve()).then(() => {
          response.writeHead(answer.status, answer.retryAfter === undefined ? {} : { 'retry-after': answer.retryAfter });
          response.end();
        });
      });
    });
  }

  async #store(body: string): Promise<void> {
    const fresh = body
      .split('\n')
      .filter(Boolean)
      .filter((text) => {
        const line = JSON.parse(text) as CheckpointLine;
        const id = `${line.tenant} ${line.seq} ${line.key}`;
        if (this.#seen.has(id)) return false;
        this.#seen.add(id);
        return true;
      });
    if (fresh.length > 0) await appendFile(this.#file, fresh.map((text) => `${text}\n`).join(''));
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as AddressInfo).port;
  }

  async storedLines(): Promise<CheckpointLine[]> {
    const text = await readFile(this.#file, 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as CheckpointLine);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

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
});
