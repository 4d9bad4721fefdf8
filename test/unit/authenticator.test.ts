import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearerToken, generateKey, hashSecret, parseKey, secretMatches } from '../../src/auth/api-key.ts';
import type { StoredKey } from '../../src/auth/api-key-store.ts';
import { Authenticator } from '../../src/auth/authenticator.ts';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.ts';

function keyring(clock: FakeClock) {
  const keys = new Map<string, StoredKey>();
  let lookups = 0;
  let down = false;
  const add = (tenant: string, changes: Partial<StoredKey> = {}) => {
    const { key, id, secretHash } = generateKey();
    keys.set(id, { id, tenant, secretHash, label: null, createdAt: new Date(clock.now()), expiresAt: null, revokedAt: null, ...changes });
    return { key, id };
  };
  const lookup = {
    find: (id: string) => {
      lookups += 1;
      if (down) return Promise.reject(new Error('connect ECONNREFUSED'));
      return Promise.resolve(keys.get(id));
    },
  };
  return {
    keys,
    add,
    lookup,
    get lookups() {
      return lookups;
    },
    setDown(value: boolean) {
      down = value;
    },
  };
}

function authenticator(clock: FakeClock, lookup: { find(id: string): Promise<StoredKey | undefined> }) {
  return new Authenticator({ keys: lookup, clock, cacheTtlMs: 30_000, cacheMaxKeys: 100, maxFailuresPerWindow: 3, failureWindowMs: 60_000 });
}

describe('API keys', () => {
  it('round-trip: a generated key parses back to its id and its secret matches the stored hash', () => {
    const { key, id, secretHash } = generateKey();
    const parsed = parseKey(key);
    assert.equal(parsed?.id, id);
    assert.ok(secretMatches(parsed.secret, secretHash));
    assert.ok(!secretMatches(parsed.secret.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')), secretHash));
    assert.equal(parseKey('aik_short_x'), undefined);
    assert.equal(hashSecret('x').length, 32);
    assert.equal(bearerToken('Bearer abc'), 'abc');
    assert.equal(bearerToken('Basic abc'), undefined);
  });
});

describe('Authenticator', () => {
  it("resolves a valid key to its tenant, and looks it up once while cached", async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = authenticator(clock, ring.lookup);
    const { key } = ring.add('acme');
    for (let i = 0; i < 5; i += 1) {
      const result = await auth.authenticate(`Bearer ${key}`, '10.0.0.1');
      assert.deepEqual(result.ok && result.tenant, 'acme');
    }
    assert.equal(ring.lookups, 1);
  });

  it('refuses a missing, malformed, unknown or wrong-secret key with INGEST_ERR_UNAUTHENTICATED', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = new Authenticator({ keys: ring.lookup, clock, cacheTtlMs: 30_000, cacheMaxKeys: 100, maxFailuresPerWindow: 100, failureWindowMs: 60_000 });
    const { key } = ring.add('acme');
    const wrongSecret = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A');
    for (const header of [undefined, 'Bearer nope', `Bearer ${generateKey().key}`, `Bearer ${wrongSecret}`]) {
      const result = await auth.authenticate(header, '10.0.0.2');
      assert.equal(!result.ok && result.code, 'INGEST_ERR_UNAUTHENTICATED', String(header));
    }
  });

  it('stops accepting a revoked key within the cache TTL, and an expired key at its expiry', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = authenticator(clock, ring.lookup);
    const { key, id } = ring.add('acme');
    const rotated = ring.add('acme', { expiresAt: new Date(clock.now() + 10_000) });
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true);
    assert.equal((await auth.authenticate(`Bearer ${rotated.key}`, 'a')).ok, true);
    ring.keys.set(id, { ...ring.keys.get(id)!, revokedAt: new Date(clock.now()) });
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true, 'still cached');
    await clock.tickAsync(10_000);
    assert.equal((await auth.authenticate(`Bearer ${rotated.key}`, 'a')).ok, false, 'expired at its expiry');
    await clock.tickAsync(20_001);
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, false, 'revoked once the cache entry is older than the TTL');
  });

  it('rate-limits failed attempts per client address, not others', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = authenticator(clock, ring.lookup);
    const { key } = ring.add('acme');
    for (let i = 0; i < 3; i += 1) await auth.authenticate('Bearer wrong', '10.9.9.9');
    const limited = await auth.authenticate(`Bearer ${key}`, '10.9.9.9');
    assert.equal(!limited.ok && limited.code, 'INGEST_ERR_AUTH_RATE_LIMITED');
    assert.ok(!limited.ok && limited.retryAfterSeconds! > 0);
    assert.equal((await auth.authenticate(`Bearer ${key}`, '10.1.1.1')).ok, true, 'another address is unaffected');
    await clock.tickAsync(60_001);
    assert.equal((await auth.authenticate(`Bearer ${key}`, '10.9.9.9')).ok, true, 'the window passes');
  });

  it('keeps a known key working while the database cannot be asked, and answers 503 for an unknown one', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = authenticator(clock, ring.lookup);
    const { key } = ring.add('acme');
    const other = ring.add('beta');
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true);
    ring.setDown(true);
    await clock.tickAsync(60_000);
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true, 'the stale entry serves');
    const unknown = await auth.authenticate(`Bearer ${other.key}`, 'a');
    assert.equal(!unknown.ok && unknown.code, 'INGEST_ERR_AUTH_UNAVAILABLE');
  });
});
