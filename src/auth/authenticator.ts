import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.ts';
import type { ErrorCode } from '../errors.ts';
import { bearerToken, parseKey, secretMatches } from './api-key.ts';
import type { StoredKey } from './api-key-store.ts';

export interface KeyLookup {
  find(id: string): Promise<StoredKey | undefined>;
}

export type AuthResult = { readonly ok: true; readonly tenant: string; readonly keyId: string } | { readonly ok: false; readonly code: ErrorCode; readonly retryAfterSeconds?: number };

export interface AuthenticatorOptions {
  readonly keys: KeyLookup;
  readonly clock: Clock;
  /** How long a looked-up key (or its absence) is trusted: the bound on how late a revocation bites. */
  readonly cacheTtlMs: number;
  readonly cacheMaxKeys: number;
  /** Failed attempts one client address may make per window before it gets 429. */
  readonly maxFailuresPerWindow: number;
  readonly failureWindowMs: number;
}

type CachedKey = { readonly found: StoredKey } | { readonly found: null };

/**
 * Resolves `Authorization: Bearer <key>` to a tenant. Keys are cached (positive and negative) for
 * cacheTtlMs, so authentication costs no database round trip per request and a revoked key stops
 * working within cacheTtlMs. Failed attempts are counted per client address; past the limit the
 * address gets 429 without a lookup.
 */
export class Authenticator {
  readonly #options: AuthenticatorOptions;
  readonly #cache: LRUCache<string, CachedKey>;
  readonly #failures: LRUCache<string, { count: number }>;

  constructor(options: AuthenticatorOptions) {
    this.#options = options;
    const perf = { now: () => options.clock.now() };
    // Stale entries are kept (not served) so that a key seen before still works while the
    // database cannot be asked: an outage must not turn into a 401 storm.
    this.#cache = new LRUCache({ max: options.cacheMaxKeys, ttl: options.cacheTtlMs, ttlAutopurge: false, noDeleteOnStaleGet: true, perf });
    this.#failures = new LRUCache({ max: 100_000, ttl: options.failureWindowMs, ttlAutopurge: false, perf, noUpdateTTL: true });
  }

  async authenticate(authorization: string | undefined, clientAddress: string): Promise<AuthResult> {
    const failures = this.#failures.get(clientAddress);
    if (failures && failures.count >= this.#options.maxFailuresPerWindow) {
      const remainingMs = this.#failures.getRemainingTTL(clientAddress);
      return { ok: false, code: 'INGEST_ERR_AUTH_RATE_LIMITED', retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)) };
    }
    const token = bearerToken(authorization);
    if (token === undefined) return this.#fail(clientAddress, 'INGEST_ERR_UNAUTHENTICATED');
    const parsed = parseKey(token);
    if (!parsed) return this.#fail(clientAddress, 'INGEST_ERR_UNAUTHENTICATED');
    let stored: StoredKey | undefined;
    try {
      stored = await this.#lookup(parsed.id);
    } catch {
      const stale = this.#cache.get(parsed.id, { allowStale: true });
      if (!stale) return { ok: false, code: 'INGEST_ERR_AUTH_UNAVAILABLE', retryAfterSeconds: 5 };
      stored = stale.found ?? undefined;
    }
    const nowMs = this.#options.clock.now();
    if (
      !stored ||
      stored.revokedAt !== null ||
      (stored.expiresAt !== null && stored.expiresAt.getTime() <= nowMs) ||
      !secretMatches(parsed.secret, stored.secretHash)
    ) {
      return this.#fail(clientAddress, 'INGEST_ERR_UNAUTHENTICATED');
    }
    return { ok: true, tenant: stored.tenant, keyId: stored.id };
  }

  async #lookup(id: string): Promise<StoredKey | undefined> {
    const cached = this.#cache.get(id);
    if (cached) return cached.found ?? undefined;
    const found = (await this.#options.keys.find(id)) ?? null;
    this.#cache.set(id, { found });
    return found ?? undefined;
  }

  #fail(clientAddress: string, code: ErrorCode): AuthResult {
    const entry = this.#failures.get(clientAddress);
    if (entry) entry.count += 1;
    else this.#failures.set(clientAddress, { count: 1 });
    return { ok: false, code };
  }
}
