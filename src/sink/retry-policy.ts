import { ExponentialBackoff, fullJitterGenerator, handleWhen, retry, type IBackoff, type IBackoffFactory, type IRetryBackoffContext, type RetryPolicy } from 'cockatiel';

export interface RetryOptions {
  /** Tries in all, the first included; 0 means no limit (until the shutdown deadline). */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

/**
 * A failure whose wait the sink already sat out: the downstream said when to come back (a
 * Retry-After, waited by SINK=http before it threw), so the retry goes at once instead of adding a
 * backoff on top of the server's own pacing.
 */
export interface ServerPacedFailure {
  readonly retryAfterWaited: true;
}

export function isServerPaced(error: unknown): error is ServerPacedFailure {
  return typeof error === 'object' && error !== null && (error as { retryAfterWaited?: unknown }).retryAfterWaited === true;
}

type BackoffContext = IRetryBackoffContext<unknown>;

/** The exponential backoff's schedule, with no wait after a server-paced failure (the schedule still advances). */
class ServerPacedBackoff implements IBackoff<BackoffContext> {
  readonly #inner: IBackoff<BackoffContext>;
  readonly duration: number;

  constructor(inner: IBackoff<BackoffContext>, context: BackoffContext) {
    this.#inner = inner;
    this.duration = 'error' in context.result && isServerPaced(context.result.error) ? 0 : inner.duration;
  }

  next(context: BackoffContext): IBackoff<BackoffContext> {
    return new ServerPacedBackoff(this.#inner.next(context), context);
  }
}

function serverPaced(factory: IBackoffFactory<BackoffContext>): IBackoffFactory<BackoffContext> {
  return { next: (context) => new ServerPacedBackoff(factory.next(context), context) };
}

/**
 * Exponential backoff with full jitter (cockatiel): wait a random time in [0, min(max, base·2ⁿ)),
 * except after a failure the sink already waited out (ServerPacedFailure).
 * Waits are cut short by the AbortSignal given to `execute`, so a drain never sits out a backoff.
 */
export function createRetryPolicy(options: RetryOptions, shouldRetry: (error: Error) => boolean): RetryPolicy {
  return retry(handleWhen(shouldRetry), {
    maxAttempts: options.maxAttempts === 0 ? Number.POSITIVE_INFINITY : options.maxAttempts - 1,
    backoff: serverPaced(
      new ExponentialBackoff({
        initialDelay: options.baseDelayMs,
        maxDelay: options.maxDelayMs,
        generator: fullJitterGenerator,
      }),
    ),
  });
}

/**
 * Run `fn` under `policy`, but settle as soon as `signal` aborts. cockatiel checks the signal only
 * between attempts and sleeps out its backoff regardless; this cuts the sleep short. The
 * abandoned attempt loop ends at its next check of the (now aborted) signal.
 */
export function executeUntilAborted<T>(policy: RetryPolicy, fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  const attempts = policy.execute(fn, signal);
  return untilAborted(attempts, signal).finally(() => {
    attempts.catch(() => {}); // an attempt loop abandoned at the abort settles unobserved
  });
}

/** `promise`, or the signal's reason as soon as it aborts (the work behind `promise` is not stopped). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort: () => void = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}
