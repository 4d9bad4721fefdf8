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

/** The code of a refused authentication (fails the test if it was accepted). */
async function failure(auth: Authenticator, header: string | undefined, address: string): Promise<string> {
  const result = await auth.authenticate(header, address);
  assert.equal(result.ok, false, `${String(header)} was accepted`);
  return result.ok ? '' : result.code;
}

/** A lookup that, while `hang` is set, does not answer until released. */
function controllableLookup(inner: { find(id: string): Promise<StoredKey | undefined> }) {
  const waiting: (() => void)[] = [];
  return {
    hang: false,
    get pending() {
      return waiting.length;
    },
    find(id: string): Promise<StoredKey | undefined> {
      if (!this.hang) return inner.find(id);
      return new Promise<void>((resolve) => waiting.push(resolve)).then(() => inner.find(id));
    },
    release() {
      for (const resolve of waiting.splice(0)) resolve();
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

  it('limits failed attempts per client address, and never refuses a valid key because of them', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = authenticator(clock, ring.lookup);
    const { key } = ring.add('acme');
    // Behind a load balancer every client has the proxy's address: one client's bad keys...
    for (let i = 0; i < 3; i += 1) assert.equal(await failure(auth, 'Bearer wrong', '10.9.9.9'), 'INGEST_ERR_UNAUTHENTICATED');
    // ...get 429 from then on, for missing, malformed and unknown keys alike...
    const limited = await auth.authenticate('Bearer wrong', '10.9.9.9');
    assert.equal(!limited.ok && limited.code, 'INGEST_ERR_AUTH_RATE_LIMITED');
    assert.ok(!limited.ok && limited.retryAfterSeconds! > 0);
    assert.equal(await failure(auth, undefined, '10.9.9.9'), 'INGEST_ERR_AUTH_RATE_LIMITED');
    assert.equal(await failure(auth, `Bearer ${generateKey().key}`, '10.9.9.9'), 'INGEST_ERR_AUTH_RATE_LIMITED');
    // ...while every valid key from the same address still passes.
    assert.equal((await auth.authenticate(`Bearer ${key}`, '10.9.9.9')).ok, true, 'a valid key from a limited address passes');
    assert.equal(await failure(auth, 'Bearer wrong', '10.1.1.1'), 'INGEST_ERR_UNAUTHENTICATED', 'another address is not limited');
    await clock.tickAsync(60_001);
    assert.equal(await failure(auth, 'Bearer wrong', '10.9.9.9'), 'INGEST_ERR_UNAUTHENTICATED', 'the window passes');
  });

  it('AUTH_CACHE_TTL_MS=0 caches nothing: every request looks its key up, and a revocation bites at once', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = new Authenticator({ keys: ring.lookup, clock, cacheTtlMs: 0, cacheMaxKeys: 100, maxFailuresPerWindow: 100, failureWindowMs: 60_000 });
    const { key, id } = ring.add('acme');
    for (let i = 0; i < 3; i += 1) assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true);
    assert.equal(ring.lookups, 3);
    ring.keys.set(id, { ...ring.keys.get(id)!, revokedAt: new Date(clock.now()) });
    assert.equal(await failure(auth, `Bearer ${key}`, 'a'), 'INGEST_ERR_UNAUTHENTICATED');
    await clock.tickAsync(3_600_000);
    assert.equal(await failure(auth, `Bearer ${key}`, 'a'), 'INGEST_ERR_UNAUTHENTICATED');
  });

  it('while a lookup hangs, answers from the stale entry at once, one lookup per key, and 503 for keys it has not seen', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const hanging = controllableLookup(ring.lookup);
    const auth = authenticator(clock, hanging);
    const { key } = ring.add('acme');
    const other = ring.add('beta');
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true);
    hanging.hang = true;
    await clock.tickAsync(30_001); // the entry is stale
    // The first request waits a moment for the refresh, then takes the stale entry.
    const first = auth.authenticate(`Bearer ${key}`, 'a');
    await clock.tickAsync(1_000);
    assert.equal((await first).ok, true);
    // From then on nobody waits: the stale entry answers at once, and no new lookup is queued.
    const settledAtOnce = async (header: string) => {
      let settled: Awaited<ReturnType<Authenticator['authenticate']>> | undefined;
      void auth.authenticate(header, 'b').then((result) => (settled = result));
      await clock.flushMicrotasks();
      assert.ok(settled, 'answered without waiting');
      return settled;
    };
    for (let i = 0; i < 20; i += 1) assert.equal((await settledAtOnce(`Bearer ${key}`)).ok, true);
    const unseen = await settledAtOnce(`Bearer ${other.key}`);
    assert.equal(!unseen.ok && unseen.code, 'INGEST_ERR_AUTH_UNAVAILABLE');
    assert.equal(hanging.pending, 1, 'one lookup in flight, none queued behind it');
    // The database answers again: the refresh lands, and the next requests use it.
    hanging.hang = false;
    hanging.release();
    await clock.flushMicrotasks();
    assert.equal((await auth.authenticate(`Bearer ${other.key}`, 'a')).ok, true);
  });

  it('after a failed lookup, keeps one probe in flight at a time and never queues requests behind it', async () => {
    const clock = createFakeClock();
    const ring = keyring(clock);
    const auth = authenticator(clock, ring.lookup);
    const { key, id } = ring.add('acme');
    assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true);
    ring.setDown(true);
    await clock.tickAsync(30_001);
    const before = ring.lookups;
    for (let i = 0; i < 50; i += 1) assert.equal((await auth.authenticate(`Bearer ${key}`, 'a')).ok, true, 'the stale entry serves');
    assert.equal(ring.lookups - before, 1, 'one failed lookup, then none until the next probe is due');
    // Back up: the revocation made meanwhile bites within the TTL.
    ring.keys.set(id, { ...ring.keys.get(id)!, revokedAt: new Date(clock.now()) });
    ring.setDown(false);
    await clock.tickAsync(1_000);
    await auth.authenticate(`Bearer ${key}`, 'a');
    await clock.flushMicrotasks();
    assert.equal(await failure(auth, `Bearer ${key}`, 'a'), 'INGEST_ERR_UNAUTHENTICATED');
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
