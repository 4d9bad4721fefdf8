import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/**
 * A proxy in front of PostgreSQL that can freeze: what a stopped or unreachable database looks
 * like to a client (connections accepted or open, nothing answered), as opposed to a refused
 * connection, which fails at once. Thawing forwards what was held back.
 */
class FreezingProxy {
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket | undefined }>();
  readonly #server = net.createServer((client) => this.#accept(client));
  #frozen = false;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    return (this.#server.address() as net.AddressInfo).port;
  }

  #accept(client: net.Socket): void {
    const pair: { client: net.Socket; upstream: net.Socket | undefined } = { client, upstream: undefined };
    this.#pairs.add(pair);
    client.on('error', () => {});
    client.on('close', () => {
      pair.upstream?.destroy();
      this.#pairs.delete(pair);
    });
    if (this.#frozen) client.pause();
    else this.#connect(pair);
  }

  #connect(pair: { client: net.Socket; upstream: net.Socket | undefined }): void {
    const upstream = net.connect(this.#target.port, this.#target.host);
    pair.upstream = upstream;
    upstream.on('error', () => {});
    upstream.on('close', () => pair.client.destroy());
    pair.client.pipe(upstream).pipe(pair.client);
  }

  freeze(): void {
    this.#frozen = true;
    for (const { client, upstream } of this.#pairs) {
      client.pause();
      upstream?.pause();
    }
  }

  thaw(): void {
    this.#frozen = false;
    for (const pair of this.#pairs) {
      if (pair.upstream) {
        pair.client.resume();
        pair.upstream.resume();
      } else {
        this.#connect(pair);
        pair.client.resume();
      }
    }
  }

  async stop(): Promise<void> {
    for (const { client, upstream } of this.#pairs) {
      client.destroy();
      upstream?.destroy();
    }
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

const CACHE_TTL_MS = 500;

describe('authentication while the database does not answer', () => {
  let db: TestDatabase;
  let proxy: FreezingProxy;
  let service: TestService;
  let store: ApiKeyStore;

  before(async () => {
    db = await createTestDatabase();
    store = new ApiKeyStore(db.pool);
    const target = new URL(db.url);
    proxy = new FreezingProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const url = new URL(db.url);
    url.hostname = '127.0.0.1';
    url.port = String(await proxy.start());
    service = await buildTestService(url.toString(), { AUTH: 'on', AUTH_CACHE_TTL_MS: String(CACHE_TTL_MS) });
  });
  after(async () => {
    proxy.thaw();
    await service.close();
    await proxy.stop();
    await db.drop();
  });

  /** The response, and how long it took; fails if there is none within 3 s (the pool's connect timeout is 5 s). */
  async function post(key: string): Promise<{ status: number; code: string | undefined; ms: number }> {
    const started = performance.now();
    const response = await Promise.race([
      service.app.inject({ method: 'POST', url: '/event', headers: { authorization: `Bearer ${key}` }, payload: sampleEvent() }),
      delay(3_000).then(() => assert.fail('no answer within 3 s: the request waited on the database')),
    ]);
    const contentType = String(response.headers['content-type'] ?? '');
    const body = contentType.includes('json') ? response.json<{ code?: string }>() : {};
    return { status: response.statusCode, code: body.code, ms: performance.now() - started };
  }

  it('answers a stale-cached key at once, an unseen key with 503 at once, and a key revoked meanwhile stops working once it is back', async () => {
    const known = await store.create('acme');
    const unseen = await store.create('acme');
    assert.equal((await post(known.key)).status, 202);

    proxy.freeze();
    await delay(CACHE_TTL_MS + 100); // the cache entry is now stale: every request wants a lookup
    const answers = [];
    for (let i = 0; i < 10; i += 1) answers.push(await post(known.key));
    answers.push(...(await Promise.all(Array.from({ length: 10 }, () => post(known.key)))));
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([202]), 'the stale entry serves');
    const slowest = Math.max(...answers.map((a) => a.ms));
    assert.ok(slowest < 1_000, `every request was answered without waiting on the database (slowest ${Math.round(slowest)} ms)`);
    const unseenAnswer = await post(unseen.key);
    assert.deepEqual([unseenAnswer.status, unseenAnswer.code], [503, 'INGEST_ERR_AUTH_UNAVAILABLE']);
    assert.ok(unseenAnswer.ms < 1_000);

    // Revoked behind the service's back (not through the frozen path), then the database is back.
    await store.revoke(known.stored.id);
    proxy.thaw();
    const backAt = performance.now();
    await waitFor(async () => (await post(known.key)).status === 401, 10_000, 'the revoked key to be refused');
    const refusedAfterMs = performance.now() - backAt;
    assert.ok(refusedAfterMs < CACHE_TTL_MS + 2_000, `refused ${Math.round(refusedAfterMs)} ms after the database was back`);
    assert.equal((await post(unseen.key)).status, 202, 'the unseen key works once the database answers');
  });
});
