import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runScript } from '../helpers/run-script.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';


describe('API keys and tenant isolation', () => {
  let db: TestDatabase;
  let service: TestService;
  const keys = async (...args: string[]) => {
    const { code, stdout } = await runScript('keys', args, { DATABASE_URL: db.url });
    assert.equal(code, 0, `npm run keys -- ${args.join(' ')}`);
    return stdout.trimEnd().split('\n');
  };
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url, { AUTH: 'on', AUTH_CACHE_TTL_MS: '200', AUTH_MAX_FAILURES_PER_MINUTE: '1000' });
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  const post = (key: string | undefined, payload: Record<string, unknown>) =>
    service.app.inject({ method: 'POST', url: '/event', headers: key ? { authorization: `Bearer ${key}` } : {}, payload });

  it('takes the tenant from the key, refuses another tenant with 403 and no key with 401', async () => {
    const acmeKey = (await keys('create', '--tenant', 'acme', '--label', 'billing')).at(-1)!;
    assert.match(acmeKey, /^aik_[0-9a-f]{16}_/, 'the key is alone on the last line');
    const { tenant: _omit, ...withoutTenant } = sampleEvent();
    const accepted = await post(acmeKey, withoutTenant);
    assert.equal(accepted.statusCode, 202, accepted.body);
    const same = await post(acmeKey, sampleEvent({ tenant: 'acme' }));
    assert.equal(same.statusCode, 202);
    const other = await post(acmeKey, sampleEvent({ tenant: 'globex' }));
    assert.equal(other.statusCode, 403);
    assert.equal(other.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(other.json<{ code: string }>().code, 'INGEST_ERR_TENANT_MISMATCH');
    const bulkOther = await service.app.inject({
      method: 'POST',
      url: '/events',
      headers: { authorization: `Bearer ${acmeKey}` },
      payload: [sampleEvent({ tenant: 'acme' }), sampleEvent({ tenant: 'globex' })],
    });
    assert.equal(bulkOther.statusCode, 403);
    const none = await post(undefined, sampleEvent());
    assert.equal(none.statusCode, 401);
    assert.equal(none.json<{ code: string }>().code, 'INGEST_ERR_UNAUTHENTICATED');
    const bogus = await post('aik_0000000000000000_' + 'A'.repeat(43), sampleEvent());
    assert.equal(bogus.statusCode, 401);
    await waitFor(async () => (await db.count("tenant = 'acme'")) === 2, 5000, 'the two acme events');
    assert.equal(await db.count("tenant <> 'acme'"), 0);
  });

  it('lists keys without secrets, revokes within the cache TTL, and rotates with an overlap', async () => {
    const key = (await keys('create', '--tenant', 'initech')).at(-1)!;
    const keyId = key.split('_')[1]!;
    assert.equal((await post(key, sampleEvent({ tenant: 'initech' }))).statusCode, 202);

    const rotatedKey = (await keys('rotate', keyId, '--overlap-hours', '1')).at(-1)!;
    assert.notEqual(rotatedKey, key);
    assert.equal((await post(rotatedKey, sampleEvent({ tenant: 'initech' }))).statusCode, 202, 'the new key works');
    assert.equal((await post(key, sampleEvent({ tenant: 'initech' }))).statusCode, 202, 'the old key works during the overlap');

    const listing = (await keys('list', '--tenant', 'initech')).join('\n');
    assert.match(listing, new RegExp(`^${keyId}\\tinitech\\texpiring\\t`, 'm'));
    assert.ok(!listing.includes(key.split('_')[2]!), 'no secret is listed');

    await keys('revoke', keyId);
    await waitFor(async () => (await post(key, sampleEvent({ tenant: 'initech' }))).statusCode === 401, 2000, 'the revoked key to stop working');
    assert.equal((await post(rotatedKey, sampleEvent({ tenant: 'initech' }))).statusCode, 202);
  });
});
