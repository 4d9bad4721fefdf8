import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent } from '../helpers/service.ts';

const BAD_KEY = 'aik_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

describe('failed-authentication limiter', () => {
  let db: TestDatabase;
  let valid: string;
  before(async () => {
    db = await createTestDatabase();
    valid = (await new ApiKeyStore(db.pool).create('acme')).key;
  });
  after(() => db.drop());

  async function withService(environment: Record<string, string>, run: (post: (key: string, forwardedFor?: string) => Promise<number>) => Promise<void>) {
    const service = await buildTestService(db.url, { AUTH: 'on', AUTH_MAX_FAILURES_PER_MINUTE: '3', ...environment });
    try {
      await run(async (key, forwardedFor) => {
        const response = await service.app.inject({
          method: 'POST',
          url: '/event',
          headers: { authorization: `Bearer ${key}`, ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
          payload: sampleEvent(),
        });
        return response.statusCode;
      });
    } finally {
      await service.close();
    }
  }

  it("never refuses a valid key because of other clients' failures from the same address (a load balancer)", async () => {
    await withService({}, async (post) => {
      for (let i = 0; i < 3; i += 1) assert.equal(await post(BAD_KEY), 401);
      assert.equal(await post(BAD_KEY), 429, 'the failing client is limited');
      for (let i = 0; i < 5; i += 1) assert.equal(await post(valid), 202, 'a valid key from the same address passes');
      assert.equal(await post(BAD_KEY), 429);
    });
  });

  it('TRUST_PROXY=true: failures count per X-Forwarded-For client, so another client behind the proxy is not limited', async () => {
    await withService({ TRUST_PROXY: 'true' }, async (post) => {
      for (let i = 0; i < 3; i += 1) assert.equal(await post(BAD_KEY, '203.0.113.1'), 401);
      assert.equal(await post(BAD_KEY, '203.0.113.1'), 429);
      assert.equal(await post(BAD_KEY, '203.0.113.2'), 401, 'another client is not limited');
      assert.equal(await post(valid, '203.0.113.1'), 202);
    });
  });

  it('TRUST_PROXY=<hop count> and TRUST_PROXY=<CIDR list> pick the client address as fastify does', async () => {
    await withService({ TRUST_PROXY: '1' }, async (post) => {
      for (let i = 0; i < 4; i += 1) await post(BAD_KEY, '198.51.100.7, 203.0.113.9');
      assert.equal(await post(BAD_KEY, '203.0.113.9'), 429, 'one hop: the address the proxy saw is the client');
      assert.equal(await post(BAD_KEY, '203.0.113.8'), 401);
    });
    await withService({ TRUST_PROXY: '127.0.0.0/8, ::1' }, async (post) => {
      for (let i = 0; i < 4; i += 1) await post(BAD_KEY, '203.0.113.9');
      assert.equal(await post(BAD_KEY, '203.0.113.9'), 429);
      assert.equal(await post(BAD_KEY, '203.0.113.8'), 401);
    });
  });
});
