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
  /**
   * How long a looked-up key (or its absence) is trusted: the bound on how late a revocation bites
   * while the database answers. 0: nothing is cached, every request looks its key up.
   */
  readonly cacheTtlMs: number;
  readonly cacheMaxKeys: number;
  /** Failed attempts one client address may make per window before its failures get 429. */
  readonly maxFailuresPerWindow: number;
  readonly failureWindowMs: number;
  /**
   * How long a request with a stale cache entry waits for its refresh before it is answered from
   * the entry; a lookup in flight for longer than this means the database is not answering.
   */
  readonly lookupWaitMs?: number;
  /** After a failed lookup, how long until the next one (the probe) may start. */
  readonly probeIntervalMs?: number;
}

const DEFAULT_LOOKUP_WAIT_MS = 250;
const DEFAULT_PROBE_INTERVAL_MS = 1_000;
/** Retry-After for INGEST_ERR_AUTH_UNAVAILABLE. */
const UNAVAILABLE_RETRY_AFTER_SECONDS = 1;

interface CachedKey {
  readonly found: StoredKey | null;
  readonly fetchedAtMs: number;
}

interface Lookup {
  readonly promise: Promise<CachedKey>;
  readonly startedAtMs: number;
}

/**
 * Resolves `Authorization: Bearer <key>` to a tenant.
 *
 * Cache: a key looked up (found or not) is fresh for cacheTtlMs; past that its entry is stale but
 * kept (LRU-bounded), so a key seen before keeps working while the database cannot be asked: an
 * outage must not turn into a 401 storm. A stale entry is refreshed by a lookup; the request
 * waits at most lookupWaitMs for it (so a revocation bites within the TTL while the database
 * answers), else it is answered from the entry and the lookup finishes in the background.
 *
 * Lookups are single-flight per key id, and never queue on a database that is not answering:
 *  - healthy: a request needing a lookup starts one (or joins the one in flight for its key);
 *  - not answering (the last lookup failed, or one has been in flight for over lookupWaitMs):
 *    no request waits; each is answered at once from its entry, stale or not, or with
 *    INGEST_ERR_AUTH_UNAVAILABLE (503, retry after 1 s) when there is none. One probe lookup at a
 *    time, at most every probeIntervalMs, finds out when the database is back.
 *
 * Failed attempts (a missing, malformed, unknown, revoked, expired or wrong key) are counted per
 * client address; past the limit that address's failures get 429 instead of 401. A valid key is
 * checked first and always passes: behind a proxy every client shares an address, and one
 * client's bad keys must not lock out the others.
 */
export class Authenticator {
  readonly #options: AuthenticatorOptions;
  readonly #lookupWaitMs: number;
  readonly #probeIntervalMs: number;
  readonly #cache: LRUCache<string, CachedKey> | undefined;
  readonly #failures: LRUCache<string, { count: number }>;
  readonly #inFlight = new Map<string, Lookup>();
  /** The last lookup failed; cleared by the next one that succeeds. */
  #unavailable = false;
  #nextProbeAtMs = 0;

  constructor(options: AuthenticatorOptions) {
    this.#options = options;
    this.#lookupWaitMs = options.lookupWaitMs ?? DEFAULT_LOOKUP_WAIT_MS;
    this.#probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    const perf = { now: () => options.clock.now() };
    // Freshness is judged here from fetchedAtMs; the cache only bounds the number of entries.
    // (lru-cache's own ttl of 0 would mean "forever"; a TTL of 0 here means no cache at all.)
    this.#cache = options.cacheTtlMs > 0 ? new LRUCache({ max: options.cacheMaxKeys }) : undefined;
    this.#failures = new LRUCache({ max: 100_000, ttl: options.failureWindowMs, ttlAutopurge: false, perf, noUpdateTTL: true, ttlResolution: 0 });
    // ttlResolution 0: lru-cache otherwise reuses one perf.now() for a millisecond of *real* time
    // (a real setTimeout clears it), so an entry could outlive the injected clock's window.
  }

  async authenticate(authorization: string | undefined, clientAddress: string): Promise<AuthResult> {
    const token = bearerToken(authorization);
    const parsed = token === undefined ? undefined : parseKey(token);
    if (!parsed) return this.#refuse(clientAddress);
    const entry = await this.#resolve(parsed.id);
    if (entry === undefined) return { ok: false, code: 'INGEST_ERR_AUTH_UNAVAILABLE', retryAfterSeconds: UNAVAILABLE_RETRY_AFTER_SECONDS };
    const stored = entry.found;
    const nowMs = this.#options.clock.now();
    if (
      !stored ||
      stored.revokedAt !== null ||
      (stored.expiresAt !== null && stored.expiresAt.getTime() <= nowMs) ||
      !secretMatches(parsed.secret, stored.secretHash)
    ) {
      return this.#refuse(clientAddress);
    }
    return { ok: true, tenant: stored.tenant, keyId: stored.id };
  }

  /** The key's entry to decide on: fresh, refreshed, or stale; undefined when there is none to be had now. */
  async #resolve(id: string): Promise<CachedKey | undefined> {
    const nowMs = this.#options.clock.now();
    const cached = this.#cache?.get(id);
    if (cached && nowMs - cached.fetchedAtMs < this.#options.cacheTtlMs) return cached;
    const answering = this.#databaseAnswering(nowMs);
    let lookup = this.#inFlight.get(id);
    if (!lookup && (answering || this.#probeDue(nowMs))) lookup = this.#startLookup(id, nowMs);
    if (!answering || !lookup) return cached;
    if (!cached) return lookup.promise.catch(() => undefined);
    return this.#withinWait(lookup.promise, cached);
  }

  /** False while the last lookup failed, or one has gone unanswered for longer than lookupWaitMs. */
  #databaseAnswering(nowMs: number): boolean {
    if (this.#unavailable) return false;
    for (const lookup of this.#inFlight.values()) {
      if (nowMs - lookup.startedAtMs > this.#lookupWaitMs) return false;
    }
    return true;
  }

  /** While the database is not answering: one probe at a time, at most every probeIntervalMs. */
  #probeDue(nowMs: number): boolean {
    return this.#unavailable && this.#inFlight.size === 0 && nowMs >= this.#nextProbeAtMs;
  }

  #startLookup(id: string, nowMs: number): Lookup {
    const promise = this.#options.keys.find(id).then(
      (found) => {
        this.#inFlight.delete(id);
        this.#unavailable = false;
        const entry: CachedKey = { found: found ?? null, fetchedAtMs: this.#options.clock.now() };
        this.#cache?.set(id, entry);
        return entry;
      },
      (error: unknown) => {
        this.#inFlight.delete(id);
        this.#unavailable = true;
        this.#nextProbeAtMs = this.#options.clock.now() + this.#probeIntervalMs;
        throw error;
      },
    );
    promise.catch(() => {}); // a background refresh that fails is not an unhandled rejection
    const lookup = { promise, startedAtMs: nowMs };
    this.#inFlight.set(id, lookup);
    return lookup;
  }

  /** The lookup's answer if it comes within lookupWaitMs, else (or if it fails) the stale entry. */
  #withinWait(promise: Promise<CachedKey>, stale: CachedKey): Promise<CachedKey> {
    const { clock } = this.#options;
    return new Promise<CachedKey>((resolve) => {
      const timer = clock.setTimeout(() => resolve(stale), this.#lookupWaitMs);
      promise.then(
        (entry) => {
          clock.clearTimeout(timer);
          resolve(entry);
        },
        () => {
          clock.clearTimeout(timer);
          resolve(stale);
        },
      );
    });
  }

  /** A refused attempt: counted against the address; 429 once it is past its limit. */
  #refuse(clientAddress: string): AuthResult {
    const entry = this.#failures.get(clientAddress);
    if (entry && entry.count >= this.#options.maxFailuresPerWindow) {
      const remainingMs = this.#failures.getRemainingTTL(clientAddress);
      return { ok: false, code: 'INGEST_ERR_AUTH_RATE_LIMITED', retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)) };
    }
    if (entry) entry.count += 1;
    else this.#failures.set(clientAddress, { count: 1 });
    return { ok: false, code: 'INGEST_ERR_UNAUTHENTICATED' };
  }
}
