import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Pool } from 'undici';
import type { RetryPolicy } from 'cockatiel';
import { raceDeadline } from '../deadline.ts';
import { retryAfterMs } from '../forward/forward-client.ts';
import { IngestInternalError } from '../internal-errors.ts';
import { createRetryPolicy, executeUntilAborted } from '../sink/retry-policy.ts';
import { mergeNewest, PendingCheckpoints, type CheckpointDestination, type CheckpointObserver, type SignedCheckpoint } from './checkpoint-destination.ts';

/** At most this many lines (one per tenant) in one POST: ~250 bytes each, so a body stays under ~256 KiB. */
export const MAX_LINES_PER_POST = 1000;

export interface WebhookDestinationOptions {
  /** AUDIT_CHECKPOINT_WEBHOOK_URL: http or https; its path and query are kept. */
  readonly url: string;
  /** Sent as `Authorization: Bearer`; undefined: no Authorization header. */
  readonly token: string | undefined;
  /** Bound on one POST (connect, answer), and on the delivery still under way at close(). */
  readonly timeoutMs: number;
  readonly retryBaseDelayMs: number;
  readonly retryMaxDelayMs: number;
  readonly logger: Pick<Logger, 'error' | 'info'>;
  readonly observer?: CheckpointObserver;
}

/** One POST of checkpoint lines did not get a 2xx: no answer, a timeout, or another status. Always retried. */
export class CheckpointWebhookError extends IngestInternalError {
  /** The receiver's status, when it answered. */
  readonly statusCode: number | undefined;
  /** Its Retry-After was waited before this was thrown: the retry goes without a further backoff. */
  readonly retryAfterWaited: boolean;

  constructor(message: string, options: { cause?: unknown; statusCode?: number; retryAfterWaited?: boolean } = {}) {
    super('AUDIT_ERR_CHECKPOINT_WEBHOOK', message, options);
    this.statusCode = options.statusCode;
    this.retryAfterWaited = options.retryAfterWaited ?? false;
  }
}

/**
 * AUDIT_CHECKPOINT_WEBHOOK_URL: each trigger's lines POSTed as one NDJSON body, the bytes the file
 * would get, so a receiver that appends bodies to a file keeps a checkpoint file `verify` reads.
 * Posting is in the background, one request at a time, retried with exponential backoff and full
 * jitter (cockatiel, as the sink's retries) for as long as the service runs. While the receiver is
 * away, lines wait here: at most one per tenant, a newer head replacing an older one (also in the
 * request being retried, so the first POST that succeeds carries each tenant's newest head). A
 * retried POST may repeat lines the receiver already stored: it dedupes by (tenant, seq, key).
 * close() gives the delivery under way `timeoutMs` more, then drops what is left (logged, counted).
 */
export class WebhookCheckpointDestination implements CheckpointDestination {
  readonly name = 'webhook';
  readonly #options: WebhookDestinationOptions;
  readonly #pool: Pool;
  readonly #path: string;
  readonly #policy: RetryPolicy;
  readonly #pending = new PendingCheckpoints();
  readonly #abort = new AbortController();
  /** The lines of the POST being tried, by tenant. */
  #inflight: Map<string, SignedCheckpoint> | undefined;
  #delivering: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: WebhookDestinationOptions) {
    this.#options = options;
    const url = new URL(options.url);
    this.#path = `${url.pathname}${url.search}`;
    this.#pool = new Pool(url.origin, {
      connections: 1,
      connectTimeout: options.timeoutMs,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    // Unref'd backoff timers: a retry waiting when the service closes does not hold the process.
    this.#policy = createRetryPolicy({ maxAttempts: 0, baseDelayMs: options.retryBaseDelayMs, maxDelayMs: options.retryMaxDelayMs }, () => true).dangerouslyUnref();
  }

  get unexportedEvents(): number {
    let inflight = 0;
    for (const line of this.#inflight?.values() ?? []) inflight += line.events;
    return this.#pending.events + inflight;
  }

  /** Lines taken and not yet delivered (the request being tried included). */
  get pendingLines(): number {
    return this.#pending.size + (this.#inflight?.size ?? 0);
  }

  export(lines: readonly SignedCheckpoint[]): Promise<void> {
    let superseded = 0;
    for (const line of lines) superseded += this.#pending.add(line);
    if (superseded > 0) this.#options.observer?.superseded('webhook', superseded);
    this.#kick();
    return Promise.resolve();
  }

  /** Resolves when nothing is waiting to be posted (tests; close() bounds its own wait). */
  async idle(): Promise<void> {
    while (this.#delivering !== undefined) await this.#delivering;
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // The last checkpoint was just handed over: give its delivery one timeout more, then stop.
    if (this.#delivering !== undefined) await raceDeadline(this.idle(), this.#options.timeoutMs);
    this.#abort.abort(new CheckpointWebhookError('the service closed before the receiver took the checkpoints'));
    await this.#delivering;
    if (this.#pending.size > 0) {
      this.#options.logger.error(
        { url: redacted(this.#options.url), tenants: this.#pending.size, events: this.#pending.events },
        'signed audit checkpoints not delivered to AUDIT_CHECKPOINT_WEBHOOK_URL before shutdown; they are dropped (the next checkpoint of each tenant covers them)',
      );
    }
    await this.#pool.destroy();
  }

  #kick(): void {
    if (this.#delivering !== undefined || this.#abort.signal.aborted || this.#pending.size === 0) return;
    this.#delivering = this.#deliverAll().finally(() => {
      this.#delivering = undefined;
      this.#kick(); // lines that came while the last request finished
    });
  }

  async #deliverAll(): Promise<void> {
    const signal = this.#abort.signal;
    while (this.#pending.size > 0 && !signal.aborted) {
      const chunk = new Map<string, SignedCheckpoint>();
      this.#inflight = chunk;
      let attempts = 0;
      try {
        await executeUntilAborted(
          this.#policy,
          async () => {
            if (signal.aborted) throw signal.reason as Error;
            attempts += 1;
            this.#foldIn(chunk);
            try {
              await this.#post([...chunk.values()], signal);
            } catch (error) {
              this.#options.observer?.exported('webhook', 'failed');
              if (attempts === 1 && !signal.aborted) {
                this.#options.logger.error(
                  { err: error, url: redacted(this.#options.url), tenants: chunk.size },
                  'could not deliver signed audit checkpoints to AUDIT_CHECKPOINT_WEBHOOK_URL; retrying with backoff, keeping the newest per tenant meanwhile',
                );
              }
              throw error;
            }
          },
          signal,
        );
        this.#inflight = undefined; // delivered: no longer counted as unexported when the observer reads it
        this.#options.observer?.exported('webhook', 'written');
        if (attempts > 1) this.#options.logger.info({ attempts, tenants: chunk.size }, 'signed audit checkpoints delivered to AUDIT_CHECKPOINT_WEBHOOK_URL after retries');
      } catch {
        // Only close() ends the retries: keep the lines, for close() to report.
        this.#inflight = undefined;
        for (const line of chunk.values()) this.#pending.add(line);
      }
    }
  }

  /** Before each try: newer heads of the request's tenants replace theirs, and waiting tenants join it. */
  #foldIn(chunk: Map<string, SignedCheckpoint>): void {
    let superseded = 0;
    for (const [tenant, line] of chunk) {
      const newer = this.#pending.takeTenant(tenant);
      if (newer === undefined) continue;
      chunk.set(tenant, mergeNewest(line, newer));
      superseded += 1;
    }
    if (superseded > 0) this.#options.observer?.superseded('webhook', superseded);
    for (const line of this.#pending.take(MAX_LINES_PER_POST - chunk.size)) chunk.set(line.tenant, line);
  }

  async #post(lines: readonly SignedCheckpoint[], signal: AbortSignal): Promise<void> {
    const headers: Record<string, string> = {
      'content-type': 'application/x-ndjson',
      ...(this.#options.token === undefined ? {} : { authorization: `Bearer ${this.#options.token}` }),
    };
    let statusCode: number;
    let retryAfter: string | string[] | undefined;
    try {
      const response = await this.#pool.request({
        path: this.#path,
        method: 'POST',
        headers,
        body: lines.map((line) => line.text).join(''),
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.#options.timeoutMs)]),
      });
      statusCode = response.statusCode;
      retryAfter = response.headers['retry-after'];
      await response.body.dump();
    } catch (error) {
      throw new CheckpointWebhookError(`no answer from the receiver: ${(error as Error).message}`, { cause: error });
    }
    if (statusCode >= 200 && statusCode < 300) return;
    const waitMs = statusCode === 429 || statusCode === 503 ? retryAfterMs(retryAfter) : undefined;
    if (waitMs !== undefined && waitMs > 0) {
      // The receiver said when to come back: wait that (at most the longest backoff), then retry at once.
      await sleep(Math.min(waitMs, this.#options.retryMaxDelayMs), undefined, { signal, ref: false }).catch(() => {});
      throw new CheckpointWebhookError(`the receiver answered ${statusCode} (Retry-After waited)`, { statusCode, retryAfterWaited: true });
    }
    throw new CheckpointWebhookError(`the receiver answered ${statusCode}`, { statusCode });
  }
}

/** The URL without credentials or query, for logs. */
export function redacted(url: string): string {
  const parsed = new URL(url);
  return `${parsed.origin}${parsed.pathname}`;
}
