/**
 * One 'abort' listener per signal, however many record() calls watch it. A long-lived signal (a
 * worker's shutdown signal, say) shared by thousands of unsettled record() calls would otherwise
 * carry thousands of listeners at once, and Node warns past ten on an EventTarget
 * (MaxListenersExceededWarning). Here each call adds to a set (O(1)) and removes itself when it
 * settles; the signal's listener is removed with the last watcher, or when it fires.
 */
export class AbortWatchers {
  readonly #bySignal = new Map<AbortSignal, { readonly watchers: Set<() => void>; readonly onAbort: () => void }>();

  /** Call `onAbort` once, when `signal` aborts (it must not be aborted yet). Returns the function that stops watching; calling it again, or after the abort, does nothing. */
  watch(signal: AbortSignal, onAbort: () => void): () => void {
    let entry = this.#bySignal.get(signal);
    if (entry === undefined) {
      const watchers = new Set<() => void>();
      const fire = () => {
        this.#bySignal.delete(signal);
        for (const watcher of watchers) watcher();
      };
      entry = { watchers, onAbort: fire };
      this.#bySignal.set(signal, entry);
      signal.addEventListener('abort', fire, { once: true });
    }
    // A function of its own per call: the same callback watched twice is two watchers.
    const watcher = () => onAbort();
    entry.watchers.add(watcher);
    const { watchers, onAbort: fire } = entry;
    return () => {
      if (!watchers.delete(watcher) || watchers.size > 0) return;
      if (this.#bySignal.get(signal)?.watchers !== watchers) return;
      this.#bySignal.delete(signal);
      signal.removeEventListener('abort', fire);
    };
  }

  /**
   * `promise`, or a rejection with `toError()` as soon as `signal` aborts; either way the listener
   * goes when it settles. Aborting stops the wait only: the work behind `promise` goes on.
   */
  untilAborted<T>(promise: Promise<T>, signal: AbortSignal, toError: () => Error): Promise<T> {
    if (signal.aborted) return Promise.reject(toError());
    return new Promise<T>((resolve, reject) => {
      const stop = this.watch(signal, () => reject(toError()));
      promise.then(
        (value) => {
          stop();
          resolve(value);
        },
        (error: Error) => {
          stop();
          reject(error);
        },
      );
    });
  }
}
