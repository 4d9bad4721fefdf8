/**
 * Requests waiting for queue room, before anything of theirs is written. Two kinds:
 *  - FIFO waiters (room): granted strictly in arrival order, the head blocking the rest, so a
 *    large bulk is not starved by a stream of small requests;
 *  - condition waiters (a tenant's fair share): each granted as soon as its own condition holds,
 *    so a tenant waiting for its share never holds up other tenants.
 * Everything is re-checked when the pipeline frees room (a batch settled) and on `wake()`. A grant
 * runs synchronously in the wake, so the room it reserves cannot be taken by anyone else first.
 * Bounded: past `maxRequests` waiting requests or `maxEvents` waiting events, `wait` answers
 * 'full' at once. Waits end with 'timeout' at their deadline, 'aborted' when their signal aborts,
 * or `closed` (abortAll, on drain).
 */
export type WaitOutcome = 'granted' | 'timeout' | 'aborted' | 'full' | 'closed';

interface Entry {
  readonly count: number;
  readonly fifo: boolean;
  /** True when the waiter may go: it has then taken what it needs (synchronously). */
  readonly tryGrant: () => boolean;
  readonly finish: (outcome: WaitOutcome) => void;
}

export class RoomWaiters {
  readonly #maxRequests: number;
  readonly #maxEvents: number;
  #entries: Entry[] = [];
  #waitingEvents = 0;
  #fifoWaiting = 0;
  #closed = false;

  constructor(options: { maxRequests: number; maxEvents: number }) {
    this.#maxRequests = options.maxRequests;
    this.#maxEvents = options.maxEvents;
  }

  /** Requests waiting now. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * True when a new request may be granted at once without waiting (if its condition holds): not
   * closed, not aborted and, for a FIFO request, no FIFO waiter ahead. `wait` would then try its
   * grant first; a caller may try it itself and skip building a waiter.
   */
  mayGrantAtOnce(fifo: boolean, signal?: AbortSignal): boolean {
    return !this.#closed && !signal?.aborted && !(fifo && this.#fifoWaiting > 0);
  }

  /**
   * Wait until `tryGrant()` returns true (it is tried at once first, unless `fifo` and another
   * FIFO waiter is ahead), at most `timeoutMs`. Answers synchronously (no promise) when the
   * outcome is known at once: the common case costs no wait.
   */
  wait(options: { count: number; fifo: boolean; timeoutMs: number; signal?: AbortSignal | undefined; tryGrant: () => boolean }): WaitOutcome | Promise<WaitOutcome> {
    if (this.#closed) return 'closed';
    if (options.signal?.aborted) return 'aborted';
    // A FIFO waiter queued: a new room request must queue behind it, not overtake it.
    if (!(options.fifo && this.#fifoWaiting > 0) && options.tryGrant()) return 'granted';
    if (options.timeoutMs <= 0) return 'timeout';
    if (this.#entries.length >= this.#maxRequests || this.#waitingEvents + options.count > this.#maxEvents) return 'full';
    return new Promise<WaitOutcome>((resolve) => {
      const signal = options.signal;
      const onAbort = () => entry.finish('aborted');
      const timer = setTimeout(() => entry.finish('timeout'), options.timeoutMs);
      let done = false;
      const entry: Entry = {
        count: options.count,
        fifo: options.fifo,
        tryGrant: options.tryGrant,
        finish: (outcome) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          const index = this.#entries.indexOf(entry);
          if (index >= 0) this.#entries.splice(index, 1);
          this.#waitingEvents -= entry.count;
          if (entry.fifo) this.#fifoWaiting -= 1;
          resolve(outcome);
          // A FIFO head that gave up may unblock the ones behind it.
          if (outcome !== 'granted' && entry.fifo && !this.#closed) queueMicrotask(() => this.wake());
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#entries.push(entry);
      this.#waitingEvents += entry.count;
      if (entry.fifo) this.#fifoWaiting += 1;
    });
  }

  /** Re-check every waiter: FIFO ones in order until the first that cannot go; the others each. */
  wake(): void {
    if (this.#entries.length === 0) return;
    let fifoBlocked = false;
    for (const entry of [...this.#entries]) {
      if (entry.fifo && fifoBlocked) continue;
      if (entry.tryGrant()) entry.finish('granted');
      else if (entry.fifo) fifoBlocked = true;
    }
  }

  /** End every wait with `outcome` ('closed' on drain; 'timeout' when shedding began). */
  endAll(outcome: WaitOutcome, which: (fifo: boolean) => boolean = () => true): void {
    for (const entry of [...this.#entries]) if (which(entry.fifo)) entry.finish(outcome);
  }

  close(): void {
    this.#closed = true;
    this.endAll('closed');
  }
}
