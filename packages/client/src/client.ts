import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import { Batcher, BatcherDrainTimeoutError, systemClock, type Clock, type FlushResult, type ItemOutcome } from '@audit-ingest/batcher';
import { DelegateBackoff, handleWhen, retry, type IRetryBackoffContext, type RetryPolicy } from 'cockatiel';
import { v7 as uuidv7 } from 'uuid';
import Queue from 'yocto-queue';
import { AbortWatchers } from './abort-watchers.ts';
import { AuditClientAbortError, AuditClientClosedError, AuditClientEventError, AuditClientFullError, RetryableSendError } from './errors.ts';

const gzip = promisify(gzipCallback);

/** #attempt's answer to a 413 for more than one event. */
const TOO_LARGE = Symbol('too large');

/** An audit event as POST /events takes it (README "POST /event"); `id` is assigned when absent. */
export interface AuditEvent {
  id?: string;
  tenant?: string;
  occurred_at: string;
  action: string;
  actor: { id: string; type?: string; name?: string };
  target?: { id?: string; type?: string; name?: string };
  outcome?: 'success' | 'failure' | 'unknown';
  source_ip?: string;
  user_agent?: string;
  metadata?: Record<string, unknown>;
}

/** One problem the service found with an event: a field path and what is wrong with it. */
export interface EventProblem {
  readonly path: string;
  readonly message: string;
}

/**
 * What became of one recorded event. record() resolves with it; it never rejects for a delivery
 * outcome (only for a full buffer or a closed client, before anything was sent).
 *  - `accepted`: the service acknowledged it (202: durable in its write-ahead log by default);
 *  - `stored`: committed to the database (the service runs ACK_MODE=committed: 201/207);
 *  - `refused`: the service refused it for good (invalid, 401/403) or set it aside in its
 *    dead-letter queue (ACK_MODE=committed, 207 outcome `rejected`: code INGEST_ERR_DEAD_LETTERED,
 *    re-driven by an operator with `npm run dlq`, never sent again by the client): `code` is the
 *    problem code (runbook.md), `problems` the field problems when the service named them;
 *  - `failed`: not known to be stored: retries exhausted (retry.maxAttempts), or left behind by a
 *    close() past its deadline. Its `id` is its idempotency key: sending it again later (same id)
 *    cannot store it twice.
 */
export type RecordResult =
  | { readonly status: 'accepted' | 'stored'; readonly id: string }
  | { readonly status: 'refused'; readonly id: string; readonly httpStatus: number; readonly code: string; readonly detail: string; readonly problems: readonly EventProblem[] }
  | { readonly status: 'failed'; readonly id: string; readonly error: Error };

export type RefusedResult = Extract<RecordResult, { status: 'refused' }>;
export type FailedResult = Extract<RecordResult, { status: 'failed' }>;

export interface RetryOptions {
  /** Tries per batch in all, the first included. Default Infinity: until close()'s deadline. */
  readonly maxAttempts?: number;
  /** Full-jitter exponential backoff: a random wait in [0, min(maxDelayMs, initialDelayMs · 2ⁿ)). Default 100. */
  readonly initialDelayMs?: number;
  /** Default 10 000. */
  readonly maxDelayMs?: number;
  /** A Retry-After of R ms is waited as R + a random [0, jitterRatio · R) (never earlier than asked). Default 0.5. */
  readonly retryAfterJitterRatio?: number;
}

export interface AuditClientOptions {
  /** The service's base URL, e.g. `http://localhost:8080`. */
  readonly url: string;
  /** An API key (`npm run keys -- create`), sent as `Authorization: Bearer <key>`. Omit only for AUTH=off. */
  readonly apiKey?: string;
  /** Events per request. Default 500; the service takes at most BULK_MAX_EVENTS (1000). */
  readonly maxBatchSize?: number;
  /** Uncompressed NDJSON bytes per request. Default 1 MiB; the service takes at most BULK_BODY_LIMIT_BYTES (4 MiB). */
  readonly maxBatchBytes?: number;
  /** How long a batch that is not full waits for more events. Default 100 ms. */
  readonly maxWaitMs?: number;
  /** Events waiting to be sent (not counting the ones in flight). Default 10 000. */
  readonly capacity?: number;
  /** Their serialised bytes. Default 32 MiB. */
  readonly capacityBytes?: number;
  /** Requests in flight at once. Default 2. */
  readonly concurrency?: number;
  /**
   * What record() does while the buffer is full. 'reject' (default): rejects at once with
   * AuditClientFullError (code AUDIT_CLIENT_ERR_FULL): the caller decides (drop, log, back off).
   * 'wait': waits for room up to fullWaitMs, then rejects the same way; the events waiting for
   * room are held by their callers' awaits, not by the client's buffer.
   */
  readonly whenFull?: 'reject' | 'wait';
  /** With whenFull 'wait': the longest record() waits for room. Default 30 000. */
  readonly fullWaitMs?: number;
  /** The largest event, serialised. Default 64 KiB, the service's BODY_LIMIT_BYTES. */
  readonly maxEventBytes?: number;
  /** Each attempt's timeout (connect, send, answer). Default 30 000 ms. */
  readonly requestTimeoutMs?: number;
  readonly retry?: RetryOptions;
  /** Called for each refused event, as well as resolving its record() promise. */
  readonly onRefused?: (result: RefusedResult) => void;
  /** Called for each event given up on, as well as resolving its record() promise. */
  readonly onFailed?: (result: FailedResult) => void;
  /** Called after a failed attempt, before the client waits to try again. */
  readonly onRetry?: (info: { readonly attempt: number; readonly delayMs: number; readonly error: Error; readonly events: number }) => void;
  /** Close (flushing) when the process is about to exit with events still buffered ('beforeExit'). Default true. */
  readonly flushOnExit?: boolean;
  /** For tests: the batcher's clock (linger timer, close deadline). Default the system clock. */
  readonly clock?: Clock;
  /** For tests or a custom agent: the fetch to use. Default globalThis.fetch. */
  readonly fetch?: typeof fetch;
}

/**
 * record()'s second argument. `signal` stops the caller's wait, never a delivery already under way:
 *  - already aborted: record() rejects at once (AuditClientAbortError, `taken: false`); nothing is
 *    buffered, no listener added;
 *  - aborts while record() waits for room (whenFull 'wait'): it leaves the queue and rejects
 *    (`taken: false`); the event is not buffered;
 *  - aborts once the event is taken (buffered or in a request): record() rejects
 *    (`taken: true`), and the event is still delivered, counted by `pending`, waited for by
 *    flush() and close(), and its outcome still reaches onRefused / onFailed. An audit event
 *    records something that already happened; cancelling the caller's operation does not unmake it.
 */
export interface RecordOptions {
  readonly signal?: AbortSignal | undefined;
}

/** flush()'s argument: `signal` stops the wait (AuditClientAbortError, `taken: true`); the events are still delivered. */
export interface FlushOptions {
  readonly signal?: AbortSignal | undefined;
}

interface PendingEvent {
  readonly id: string;
  readonly line: string;
  readonly bytes: number;
  result: RecordResult | undefined;
}

interface RoomWaiter {
  readonly event: PendingEvent;
  /** Out of the wait: admitted, or it left (fullWaitMs passed, its signal aborted) and is skipped when it comes to the front. */
  done: boolean;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (result: Promise<RecordResult>) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
  /** Stops watching `signal` (undefined without one). */
  stopWatching: (() => void) | undefined;
}

/** Waiters that left stay in the FIFO as marks; past this many, and more than half of it, it is rebuilt without them. */
const COMPACT_LEFT_WAITERS_AT = 64;

const DEFAULTS = {
  maxBatchSize: 500,
  maxBatchBytes: 1024 * 1024,
  maxWaitMs: 100,
  capacity: 10_000,
  capacityBytes: 32 * 1024 * 1024,
  concurrency: 2,
  fullWaitMs: 30_000,
  maxEventBytes: 64 * 1024,
  requestTimeoutMs: 30_000,
};

/** Retry-After: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null, nowMs = Date.now()): number | undefined {
  if (header === null) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

/** Statuses worth trying again with the same ids: the service may take the batch later. */
function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

interface ProblemDocument {
  readonly code?: string;
  readonly detail?: string;
  readonly title?: string;
  readonly errors?: readonly EventProblem[];
}

interface BulkAnswer {
  readonly accepted?: readonly { readonly index: number; readonly id: string; readonly outcome?: ItemOutcome }[];
  readonly rejected?: readonly { readonly index: number; readonly errors: readonly EventProblem[] }[];
}

/**
 * A client of the audit-ingest service. `record(event)` puts the event in a bounded buffer (the
 * @audit-ingest/batcher package) and resolves once the service has answered for it; batches go
 * out as gzip NDJSON `POST /events` when full (maxBatchSize, maxBatchBytes) or maxWaitMs after
 * their first event. Every event carries a UUIDv7 id from the moment it is recorded, so a retry
 * (after a timeout, a lost connection, a 429/503 or a service restart) can never store it twice.
 */
export class AuditClient {
  readonly #options: AuditClientOptions;
  readonly #endpoint: string;
  readonly #headers: Record<string, string>;
  readonly #fetch: typeof fetch;
  readonly #batcher: Batcher<PendingEvent>;
  readonly #newPolicy: () => RetryPolicy;
  readonly #maxEventBytes: number;
  readonly #unsettled = new Set<Promise<RecordResult>>();
  /**
   * record() calls waiting for room (whenFull 'wait'), oldest first: a FIFO with O(1) dequeue. One
   * that leaves early (fullWaitMs, its signal) is marked done in O(1) and skipped at the front;
   * #leftWaiters counts those marks, so the queue is compacted before they outnumber the live ones.
   */
  #roomWaiters = new Queue<RoomWaiter>();
  #leftWaiters = 0;
  /** One 'abort' listener per caller's signal, however many record() calls share it. */
  readonly #abortWatchers = new AbortWatchers();
  #closing: Promise<void> | undefined;
  readonly #onBeforeExit = () => {
    if (this.#unsettled.size > 0) void this.close();
  };

  constructor(options: AuditClientOptions) {
    this.#options = options;
    this.#endpoint = new URL('/events', options.url).toString();
    this.#headers = {
      'content-type': 'application/x-ndjson',
      'content-encoding': 'gzip',
      ...(options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }),
    };
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#maxEventBytes = options.maxEventBytes ?? DEFAULTS.maxEventBytes;
    const retryOptions = options.retry ?? {};
    const initialDelayMs = retryOptions.initialDelayMs ?? 100;
    const maxDelayMs = retryOptions.maxDelayMs ?? 10_000;
    const jitterRatio = retryOptions.retryAfterJitterRatio ?? 0.5;
    const maxAttempts = retryOptions.maxAttempts ?? Number.POSITIVE_INFINITY;
    // One policy per batch: its onRetry listener then hears that batch's retries only.
    this.#newPolicy = () => retry(
      handleWhen((error) => error instanceof RetryableSendError),
      {
        maxAttempts: maxAttempts - 1,
        backoff: new DelegateBackoff((context: IRetryBackoffContext<unknown>) => {
          const error = 'error' in context.result ? context.result.error : undefined;
          const retryAfterMs = error instanceof RetryableSendError ? error.retryAfterMs : undefined;
          if (retryAfterMs !== undefined) return retryAfterMs + Math.random() * jitterRatio * retryAfterMs;
          return Math.random() * Math.min(maxDelayMs, initialDelayMs * 2 ** (context.attempt - 1));
        }),
      },
    );
    this.#batcher = new Batcher<PendingEvent>({
      maxBatchSize: options.maxBatchSize ?? DEFAULTS.maxBatchSize,
      maxBatchBytes: options.maxBatchBytes ?? DEFAULTS.maxBatchBytes,
      maxWaitMs: options.maxWaitMs ?? DEFAULTS.maxWaitMs,
      capacity: options.capacity ?? DEFAULTS.capacity,
      capacityBytes: options.capacityBytes ?? DEFAULTS.capacityBytes,
      flushConcurrency: options.concurrency ?? DEFAULTS.concurrency,
      clock: options.clock ?? systemClock,
      sizeOf: (event) => event.bytes,
      flush: (batch, context) => this.#send(batch, context.signal),
      onFlushStarted: () => this.#admitWaiting(),
    });
    if (options.flushOnExit !== false) process.on('beforeExit', this.#onBeforeExit);
  }

  /** Events taken and not yet answered for (buffered or in flight, also those whose record() was aborted; not those waiting for room). */
  get pending(): number {
    return this.#unsettled.size;
  }

  /**
   * Record one event. Its id (the event's own `id`, else a new UUIDv7) is fixed here. Resolves
   * with what became of it (RecordResult); never rejects for a delivery outcome. Rejects when it
   * was never taken: the buffer is full (AuditClientFullError), the client is closed
   * (AuditClientClosedError), the event cannot be serialised or is larger than maxEventBytes
   * (AuditClientEventError), or `options.signal` aborted before it was taken
   * (AuditClientAbortError, `taken: false`). An abort after it was taken rejects too
   * (AuditClientAbortError, `taken: true`) but only stops the wait: the event is still delivered
   * (RecordOptions).
   */
  record(event: AuditEvent, options: RecordOptions = {}): Promise<RecordResult> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new AuditClientAbortError(signal.reason, { taken: false }));
    if (this.#closing) return Promise.reject(new AuditClientClosedError());
    let pending: PendingEvent;
    try {
      pending = this.#prepare(event);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const enqueued = this.#enqueue(pending);
    if (enqueued) return signal ? this.#untilAborted(enqueued, signal, pending.id) : enqueued;
    if (this.#options.whenFull !== 'wait') return Promise.reject(new AuditClientFullError(this.#batcher.capacity));
    return new Promise<RecordResult>((resolve, reject) => {
      const waiter: RoomWaiter = {
        event: pending,
        done: false,
        signal,
        resolve,
        reject,
        timer: setTimeout(() => this.#leaveWait(waiter, new AuditClientFullError(this.#batcher.capacity)), this.#options.fullWaitMs ?? DEFAULTS.fullWaitMs),
        stopWatching: undefined,
      };
      if (signal) {
        waiter.stopWatching = this.#abortWatchers.watch(signal, () => {
          this.#leaveWait(waiter, new AuditClientAbortError(signal.reason, { taken: false, id: pending.id }));
        });
      }
      this.#roomWaiters.enqueue(waiter);
    });
  }

  /**
   * Resolves once every event recorded before the call has been answered for (sent and
   * acknowledged, refused, or given up on). Batches that are not full still wait out maxWaitMs.
   * `options.signal` stops the wait: flush() rejects (AuditClientAbortError, `taken: true`) and
   * the events are still delivered.
   */
  async flush(options: FlushOptions = {}): Promise<void> {
    const { signal } = options;
    const settled = Promise.all([...this.#unsettled]);
    if (!signal) {
      await settled;
      return;
    }
    await this.#abortWatchers.untilAborted(settled, signal, () => new AuditClientAbortError(signal.reason, {
      taken: true,
      message: 'flush() was aborted: only the wait stopped; the events recorded before it are still delivered',
    }));
  }

  /**
   * Stop taking events and send everything buffered, within `deadlineMs` (default 10 000). Events
   * still unsent at the deadline resolve as `failed` (their ids stay valid for a later resend).
   * Call it from the application's shutdown (SIGTERM handler); a process that simply runs out of
   * work closes the client itself ('beforeExit', flushOnExit). Idempotent.
   */
  close(options: { deadlineMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#close(options.deadlineMs ?? 10_000);
    return this.#closing;
  }

  async #close(deadlineMs: number): Promise<void> {
    process.off('beforeExit', this.#onBeforeExit);
    const startedAtMs = Date.now();
    // Events already waiting for room were recorded before close(): they go in as room frees,
    // within the deadline; any still waiting then are refused (never taken, nothing sent).
    while (this.#roomWaiters.size > this.#leftWaiters && this.#unsettled.size > 0 && Date.now() - startedAtMs < deadlineMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs - (Date.now() - startedAtMs))));
      await Promise.race([...this.#unsettled, timeout]);
      clearTimeout(timer);
      this.#admitWaiting();
    }
    for (const waiter of this.#roomWaiters.drain()) {
      if (waiter.done) continue;
      this.#endWait(waiter);
      waiter.reject(new AuditClientClosedError('close() deadline passed while the event waited for room in the buffer'));
    }
    this.#leftWaiters = 0;
    try {
      await this.#batcher.shutdown(Math.max(0, deadlineMs - (Date.now() - startedAtMs)));
    } catch (error) {
      if (!(error instanceof BatcherDrainTimeoutError)) throw error;
    }
  }

  #prepare(event: AuditEvent): PendingEvent {
    const id = event.id ?? uuidv7();
    let line: string;
    try {
      line = JSON.stringify(event.id === undefined ? { ...event, id } : event);
    } catch (cause) {
      throw new AuditClientEventError('the event cannot be serialised as JSON', { cause });
    }
    const bytes = Buffer.byteLength(line) + 1;
    if (bytes > this.#maxEventBytes) throw new AuditClientEventError(`the event is ${bytes} bytes serialised; at most ${this.#maxEventBytes} (maxEventBytes)`);
    return { id, line, bytes, result: undefined };
  }

  /** The event's result promise, or undefined when there is no room. */
  #enqueue(event: PendingEvent): Promise<RecordResult> | undefined {
    let settle!: (result: RecordResult) => void;
    const settled = new Promise<RecordResult>((resolve) => (settle = resolve));
    // The waiter settles the promise itself (no extra promise job per event); the callbacks run
    // in a microtask of their own, so one that throws cannot disturb the batcher's bookkeeping.
    const taken = this.#batcher.enqueue(event, (outcome) => {
      const result = this.#resultOf(event, outcome);
      this.#unsettled.delete(settled);
      settle(result);
      if (result.status === 'refused' && this.#options.onRefused) {
        const onRefused = this.#options.onRefused;
        queueMicrotask(() => onRefused(result));
      } else if (result.status === 'failed' && this.#options.onFailed) {
        const onFailed = this.#options.onFailed;
        queueMicrotask(() => onFailed(result));
      }
    });
    if (!taken.ok) {
      if (taken.reason === 'closed') throw new AuditClientClosedError();
      return undefined;
    }
    this.#unsettled.add(settled);
    return settled;
  }

  #resultOf(event: PendingEvent, outcome: ItemOutcome): RecordResult {
    if (event.result) return event.result;
    if (outcome === 'dropped') return { status: 'failed', id: event.id, error: new AuditClientClosedError('close() deadline passed before the event was acknowledged') };
    return { status: 'failed', id: event.id, error: new Error(`the batch ended as ${outcome} without an answer for this event`) };
  }

  #admitWaiting(): void {
    for (let waiter = this.#roomWaiters.peek(); waiter !== undefined; waiter = this.#roomWaiters.peek()) {
      if (waiter.done) {
        this.#roomWaiters.dequeue();
        this.#leftWaiters -= 1;
        continue;
      }
      const { signal } = waiter;
      // Aborted, its watcher not yet run (the abort is being dispatched): it leaves, not taken.
      if (signal?.aborted) {
        this.#leaveWait(waiter, new AuditClientAbortError(signal.reason, { taken: false, id: waiter.event.id }));
        continue;
      }
      let enqueued: Promise<RecordResult> | undefined;
      try {
        enqueued = this.#enqueue(waiter.event);
      } catch (error) {
        enqueued = Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      if (!enqueued) return;
      this.#roomWaiters.dequeue();
      this.#endWait(waiter);
      waiter.resolve(signal ? this.#untilAborted(enqueued, signal, waiter.event.id) : enqueued);
    }
  }

  /** The waiter is out of the wait (admitted, refused, or closed): its timer and its abort watch go. */
  #endWait(waiter: RoomWaiter): void {
    waiter.done = true;
    clearTimeout(waiter.timer);
    waiter.stopWatching?.();
  }

  /**
   * A waiter leaves before room came (fullWaitMs passed, its signal aborted): rejected, nothing
   * taken. It stays in the FIFO as a mark (O(1)), skipped at the front; once the marks are most of
   * the queue it is rebuilt without them (amortised O(1)), so callers that keep giving up while
   * the buffer stays full cannot grow it without bound.
   */
  #leaveWait(waiter: RoomWaiter, error: Error): void {
    if (waiter.done) return;
    this.#endWait(waiter);
    waiter.reject(error);
    this.#leftWaiters += 1;
    if (this.#leftWaiters >= COMPACT_LEFT_WAITERS_AT && this.#leftWaiters * 2 > this.#roomWaiters.size) {
      const live = new Queue<RoomWaiter>();
      for (const kept of this.#roomWaiters) if (!kept.done) live.enqueue(kept);
      this.#roomWaiters = live;
      this.#leftWaiters = 0;
    }
  }

  /** A taken event's result, or its abort (AuditClientAbortError, `taken: true`): the event itself goes on. */
  #untilAborted(settled: Promise<RecordResult>, signal: AbortSignal, id: string): Promise<RecordResult> {
    return this.#abortWatchers.untilAborted(settled, signal, () => new AuditClientAbortError(signal.reason, { taken: true, id }));
  }

  /**
   * Send one batch until every event in it has an answer: each attempt sends the events still
   * unanswered (the same lines, the same ids), so a retry after a lost answer is idempotent.
   */
  async #send(batch: readonly PendingEvent[], signal: AbortSignal): Promise<FlushResult> {
    let remaining = batch.map((_, index) => index);
    const policy = this.#newPolicy();
    const listener = policy.onRetry(({ delay, attempt, ...reason }) => {
      const error = 'error' in reason ? reason.error : new Error('retry');
      this.#options.onRetry?.({ attempt, delayMs: delay, error, events: remaining.length });
    });
    // Events per request: the whole batch, halved for good after each 413 (remembered across
    // retries, so a retry does not meet the same 413 again).
    let partSize = batch.length;
    const attempts = policy.execute(async ({ attempt }) => {
      const unanswered: number[] = [];
      let position = 0;
      while (position < remaining.length) {
        const part = remaining.slice(position, position + partSize);
        let left: number[] | typeof TOO_LARGE;
        try {
          left = await this.#attempt(batch, part, signal);
        } catch (error) {
          remaining = [...unanswered, ...remaining.slice(position)];
          throw error;
        }
        if (left === TOO_LARGE) {
          partSize = Math.ceil(part.length / 2);
          continue;
        }
        unanswered.push(...left);
        position += part.length;
      }
      remaining = unanswered;
      if (remaining.length > 0) {
        throw new RetryableSendError(`${remaining.length} events of the batch not yet stored (attempt ${attempt})`);
      }
    }, signal);
    try {
      // The batcher's signal (close() past its deadline) ends the wait at once: cockatiel sleeps out its backoff regardless.
      await this.#abortWatchers.untilAborted(attempts, signal, () => signal.reason as Error);
    } catch (error) {
      for (const index of remaining) {
        const event = batch[index]!;
        event.result ??= { status: 'failed', id: event.id, error: error instanceof Error ? error : new Error(String(error)) };
      }
    } finally {
      listener.dispose();
      attempts.catch(() => {});
    }
    const rejected: number[] = [];
    batch.forEach((event, index) => {
      if (event.result?.status !== 'accepted' && event.result?.status !== 'stored') rejected.push(index);
    });
    return { rejected };
  }

  /**
   * One POST of the events at `indexes`; sets the results it learnt and returns the indexes still
   * to send, or TOO_LARGE (a 413 for more than one event: send fewer at a time).
   */
  async #attempt(batch: readonly PendingEvent[], indexes: readonly number[], signal: AbortSignal): Promise<number[] | typeof TOO_LARGE> {
    let body = '';
    for (const index of indexes) body += `${batch[index]!.line}\n`;
    const compressed = await gzip(body);
    let response: Response;
    let text: string;
    try {
      response = await this.#fetch(this.#endpoint, {
        method: 'POST',
        headers: this.#headers,
        body: compressed,
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs)]),
      });
      text = await response.text();
    } catch (cause) {
      if (signal.aborted) throw cause;
      throw new RetryableSendError(`POST /events failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    const json = parseJson(text);
    if (response.status === 201 || response.status === 202 || response.status === 207) {
      return this.#applyAnswer(batch, indexes, json ?? {});
    }
    const problem = (json ?? {}) as ProblemDocument;
    if (isRetryableStatus(response.status)) {
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      throw new RetryableSendError(`POST /events answered ${response.status} ${problem.code ?? ''}`.trim(), {
        status: response.status,
        ...(problem.code === undefined ? {} : { problemCode: problem.code }),
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
    }
    // Too large for the service (BULK_MAX_EVENTS, BULK_BODY_LIMIT_BYTES, a tenant's burst): the
    // caller sends it in smaller parts, down to single events.
    if (response.status === 413 && indexes.length > 1) return TOO_LARGE;
    // Any other answer refuses the whole request for good (400 with every line invalid, 401, 403,
    // a 413 for one event, 415): each event gets the problem, and its own field problems when the service named them.
    const code = problem.code ?? `HTTP_${response.status}`;
    const detail = problem.detail ?? problem.title ?? text.slice(0, 200);
    const perIndex = new Map<number, EventProblem[]>();
    for (const issue of problem.errors ?? []) {
      const match = /^\[(\d+)\]\.?(.*)$/.exec(issue.path);
      if (!match) continue;
      const list = perIndex.get(Number(match[1])) ?? [];
      list.push({ path: match[2] || '(body)', message: issue.message });
      perIndex.set(Number(match[1]), list);
    }
    indexes.forEach((batchIndex, sentIndex) => {
      const event = batch[batchIndex]!;
      event.result = { status: 'refused', id: event.id, httpStatus: response.status, code, detail, problems: perIndex.get(sentIndex) ?? [] };
    });
    return [];
  }

  #applyAnswer(batch: readonly PendingEvent[], indexes: readonly number[], answer: BulkAnswer): number[] {
    const answered = new Set<number>();
    for (const item of answer.accepted ?? []) {
      const batchIndex = indexes[item.index];
      if (batchIndex === undefined) continue;
      const event = batch[batchIndex]!;
      if (item.outcome === undefined) event.result = { status: 'accepted', id: event.id };
      else if (item.outcome === 'stored') event.result = { status: 'stored', id: event.id };
      else if (item.outcome === 'rejected') {
        event.result = { status: 'refused', id: event.id, httpStatus: 207, code: 'INGEST_ERR_DEAD_LETTERED', detail: 'the database refused the event for good; it is dead-lettered', problems: [] };
      } else continue; // failed or dropped in the service: send it again (same id)
      answered.add(item.index);
    }
    for (const item of answer.rejected ?? []) {
      const batchIndex = indexes[item.index];
      if (batchIndex === undefined) continue;
      const event = batch[batchIndex]!;
      event.result = { status: 'refused', id: event.id, httpStatus: 400, code: 'INGEST_ERR_VALIDATION', detail: 'the service refused the event', problems: item.errors };
      answered.add(item.index);
    }
    return indexes.filter((_, sentIndex) => !answered.has(sentIndex));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
