import type { Clock, TimerHandle } from './clock.ts';

/**
 * Why a coalesced map left: `keys` (it held maxKeys distinct keys), `time` (maxWaitMs after its
 * first value), `close`.
 */
export type CoalesceReason = 'keys' | 'time' | 'close';

/** One key and its merged value, as the flush function receives them. */
export type CoalescedEntry<K, V> = readonly [key: K, value: V];

export interface CoalescerOptions<K, V> {
  /** Seal the open map once it holds this many distinct keys. */
  readonly maxKeys: number;
  /** Seal the open map this long after its first value. Infinity: only keys and close() seal it. */
  readonly maxWaitMs: number;
  /**
   * Sealed maps waiting for the flush or in it, at most. While that many are pending, a full or
   * due open map stays open: values for keys it holds still merge, a new key is refused ('full').
   */
  readonly maxPendingFlushes: number;
  readonly clock: Clock;
  /** The identity of a key (composite keys: join their parts unambiguously). */
  readonly identityOf: (key: K) => string;
  /** Combine two values of one key; the older value comes first. */
  readonly merge: (older: V, newer: V) => V;
  /** Write one sealed map. Maps are flushed one at a time, in the order they were sealed. */
  readonly flush: (entries: readonly CoalescedEntry<K, V>[], context: { readonly reason: CoalesceReason }) => Promise<void>;
  /** Called once per flush, after it settles (the place for metrics); `error` when it failed. */
  readonly onFlushSettled?: (report: { readonly reason: CoalesceReason; readonly keys: number; readonly values: number; readonly error?: unknown }) => void;
}

export type CoalesceResult = { readonly ok: true } | { readonly ok: false; readonly reason: 'full' | 'closed' };

/**
 * The combiner on its own: values merged per key, no triggers. What the Coalescer's open map is,
 * and what a caller that flushes exactly once uses directly (the COPY sink's per-transaction
 * rollup: one upsert per transaction, in one key order, so a trigger splitting it would only hurt).
 */
export class CoalescingMap<K, V> {
  readonly #entries = new Map<string, [K, V]>();
  readonly #identityOf: (key: K) => string;
  readonly #merge: (older: V, newer: V) => V;
  #values = 0;

  constructor(identityOf: (key: K) => string, merge: (older: V, newer: V) => V) {
    this.#identityOf = identityOf;
    this.#merge = merge;
  }

  /** Values merged in (an entry counts every value of its key). */
  get values(): number {
    return this.#values;
  }

  /** Distinct keys. */
  get size(): number {
    return this.#entries.size;
  }

  /** Merge into a key already held; false (and nothing changed) when it is not held. */
  mergeInto(key: K, value: V): boolean {
    const existing = this.#entries.get(this.#identityOf(key));
    if (!existing) return false;
    existing[1] = this.#merge(existing[1], value);
    this.#values += 1;
    return true;
  }

  /** Merge into the key's entry, adding it when new. */
  add(key: K, value: V): void {
    if (this.mergeInto(key, value)) return;
    this.#entries.set(this.#identityOf(key), [key, value]);
    this.#values += 1;
  }

  /** Every key with its merged value, in the order the keys first came. */
  entries(): CoalescedEntry<K, V>[] {
    return [...this.#entries.values()];
  }
}

interface OpenMap<K, V> {
  readonly entries: CoalescingMap<K, V>;
  timer: TimerHandle | undefined;
  /** Its wait passed while no flush could take it: seal it as soon as one can. */
  due: boolean;
}

interface SealedMap<K, V> {
  readonly entries: readonly CoalescedEntry<K, V>[];
  readonly values: number;
  readonly reason: CoalesceReason;
}

/**
 * A batcher that combines instead of appending: values are merged per key into one open map
 * (a counter adds, a gauge keeps the last), and the map is flushed as one row per key — a million
 * increments over 100 keys reach the sink as about 100 rows per flush. The batcher's triggers
 * (batcher.ts): a count (distinct keys), a wait on the injected Clock, and close().
 * Bounded: the open map never holds more than maxKeys keys and at most maxPendingFlushes sealed
 * maps wait; past that, add() refuses a new key without side effects (it never blocks, never drops).
 * A failed flush is reported (onFlushSettled) and its values are gone: retrying belongs in the
 * flush function (a Sink decorator), as for the batcher.
 * Hand-written rather than taken from a library: the batcher's own triggers and Clock seam are the
 * point, and the combining map is ~20 lines on top of them.
 */
export class Coalescer<K, V> {
  readonly #options: CoalescerOptions<K, V>;
  #open: OpenMap<K, V> | undefined;
  readonly #sealed: SealedMap<K, V>[] = [];
  #flushing = false;
  #closed = false;
  #closePromise: Promise<void> | undefined;
  #idleResolvers: (() => void)[] = [];

  constructor(options: CoalescerOptions<K, V>) {
    for (const key of ['maxKeys', 'maxPendingFlushes'] as const) {
      if (!(options[key] >= 1)) throw new RangeError(`${key} must be at least 1`);
    }
    if (!(options.maxWaitMs >= 0)) throw new RangeError('maxWaitMs must be non-negative');
    this.#options = options;
  }

  /** Distinct keys in the open map. */
  get openKeys(): number {
    return this.#open?.entries.size ?? 0;
  }

  /** Sealed maps waiting for the flush or in it. */
  get pendingFlushes(): number {
    return this.#sealed.length + (this.#flushing ? 1 : 0);
  }

  /** Merge one value into its key's entry, or refuse it without side effects. */
  add(key: K, value: V): CoalesceResult {
    if (this.#closed) return { ok: false, reason: 'closed' };
    let open = this.#open;
    if (open?.entries.mergeInto(key, value)) return { ok: true };
    if (open && open.entries.size >= this.#options.maxKeys) {
      if (!this.#trySeal('keys')) return { ok: false, reason: 'full' };
      open = undefined;
    }
    open ??= this.#openMap();
    open.entries.add(key, value);
    if (open.entries.size >= this.#options.maxKeys) this.#trySeal('keys');
    return { ok: true };
  }

  /** Stop taking values, flush the open map and every sealed one; settles once all flushes have. Idempotent. */
  close(): Promise<void> {
    this.#closePromise ??= this.#close();
    return this.#closePromise;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#seal('close');
    await new Promise<void>((resolve) => {
      this.#idleResolvers.push(resolve);
      this.#checkIdle();
    });
  }

  #openMap(): OpenMap<K, V> {
    const open: OpenMap<K, V> = { entries: new CoalescingMap(this.#options.identityOf, this.#options.merge), timer: undefined, due: false };
    if (Number.isFinite(this.#options.maxWaitMs)) {
      open.timer = this.#options.clock.setTimeout(() => {
        open.timer = undefined;
        if (this.#open !== open) return;
        open.due = true;
        this.#trySeal('time');
      }, this.#options.maxWaitMs);
    }
    this.#open = open;
    return open;
  }

  /** Seal the open map if a pending place is free; false when none is. */
  #trySeal(reason: CoalesceReason): boolean {
    if (this.pendingFlushes >= this.#options.maxPendingFlushes) return false;
    this.#seal(reason);
    return true;
  }

  #seal(reason: CoalesceReason): void {
    const open = this.#open;
    if (!open) return;
    this.#open = undefined;
    if (open.timer !== undefined) this.#options.clock.clearTimeout(open.timer);
    this.#sealed.push({ entries: open.entries.entries(), values: open.entries.values, reason });
    this.#pump();
  }

  #pump(): void {
    if (this.#flushing) return;
    const next = this.#sealed.shift();
    if (!next) return;
    this.#flushing = true;
    void this.#runFlush(next);
  }

  async #runFlush(map: SealedMap<K, V>): Promise<void> {
    let error: unknown;
    let failed = false;
    try {
      await this.#options.flush(map.entries, { reason: map.reason });
    } catch (caught) {
      failed = true;
      error = caught;
    }
    this.#flushing = false;
    this.#options.onFlushSettled?.({ reason: map.reason, keys: map.entries.length, values: map.values, ...(failed ? { error } : {}) });
    // A place is free again: an open map that filled up or fell due while none was goes now.
    const open = this.#open;
    if (open && (open.due || open.entries.size >= this.#options.maxKeys)) this.#seal(open.due ? 'time' : 'keys');
    this.#pump();
    this.#checkIdle();
  }

  #checkIdle(): void {
    if (this.#flushing || this.#sealed.length > 0 || this.#open !== undefined) return;
    const resolvers = this.#idleResolvers;
    this.#idleResolvers = [];
    for (const resolve of resolvers) resolve();
  }
}
