import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { Pool } from 'undici';
import type { RetryPolicy } from 'cockatiel';
import { raceDeadline } from '../deadline.ts';
import { retryAfterMs } from '../forward/forward-client.ts';
import { IngestInternalError } from '../internal-errors.ts';
import { createRetryPolicy, executeUntilAborted } from '../sink/retry-policy.ts';
import { mergeNewest, PendingCheckpoints, type CheckpointDestination, type CheckpointObserver, type SignedCheckpoint } from './checkpoint-destination.ts';
import type { CheckpointOutbox } from './checkpoint-outbox.ts';

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
  readonly logger: Pick<Logger, 'error' | 'warn' | 'info'>;
  readonly observer?: WebhookObserver;
  /**
   * DATA_DIR/audit-checkpoints-outbox.ndjson (checkpoint-outbox.ts) and the lines an earlier run
   * left in it, delivered first; undefined: the waiting lines live in memory only.
   */
  readonly outbox?: { readonly file: CheckpointOutbox; readonly restored: readonly SignedCheckpoint[] };
}

/** What the webhook reports besides what every destination does. */
export interface WebhookObserver extends CheckpointObserver {
  /** A POST answered with a status retrying does not change (isRefusal). */
  refused(): void;
  /** The outbox file now holds `lines` lines. */
  outboxWritten(lines: number): void;
  /** A rewrite of the outbox file failed. */
  outboxFailed(): void;
}

/**
 * A status that says the receiver will not take these requests as they are, whenever they are
 * sent (a wrong token, path or body): 4xx other than 408 (timeout), 425 (too early), 429 (too many).
 */
export function isRefusal(statusCode: number): boolean {
  return statusCode >= 400 && statusCode < 500 && statusCode !== 408 && statusCode !== 425 && statusCode !== 429;
}

/** One POST of checkpoint lines did not get a 2xx: no answer, a timeout, or another status. Always retried. */
export class CheckpointWebhookError extends IngestInternalError {
  /** The receiver's status, when it answered. */
  readonly statusCode: number | undefined;
  /** Its Retry-After (or, after a refusal, the longest backoff) was waited before the retry: it goes without a further backoff. */
  readonly retryAfterWaited: boolean;
  /** The status is a refusal (isRefusal): retried only every AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS. */
  readonly refused: boolean;

  constructor(message: string, options: { cause?: unknown; statusCode?: number; retryAfterWaited?: boolean; refused?: boolean } = {}) {
    super('AUDIT_ERR_CHECKPOINT_WEBHOOK', message, options);
    this.statusCode = options.statusCode;
    this.retryAfterWaited = options.retryAfterWaited ?? false;
    this.refused = options.refused ?? false;
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
 * A refusal (isRefusal: 401, 404, ...) is retried too, but only every `retryMaxDelayMs`: the lines
 * are evidence, and a newer head replaces them anyway, so nothing grows while the receiver's owner
 * fixes the token or the path.
 *
 * With an outbox, the waiting lines (those in the request being tried included) are also on disk:
 * rewritten whenever that set changes, one write at a time, the changes made during a write
 * coalesced into the next (so at most one write per trigger and one per delivered request); the
 * file is removed once everything is delivered. export() resolves once its lines are there. At
 * start the lines an earlier run left are delivered first; close() gives the delivery under way
 * `timeoutMs` more and leaves what is still waiting in the outbox for the next start (without one,
 * it is dropped: logged, counted).
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
  /** The waiting set changed since the outbox was last written. */
  #outboxDirty = false;
  #persisting: Promise<void> | undefined;
  /** The last outbox write failed (logged once until one succeeds). */
  #outboxFailing = false;
  /** A refusal was logged in this outage. */
  #refusalLogged = false;

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
    // What an earlier run left: already on disk, delivered before anything this run signs.
    for (const line of options.outbox?.restored ?? []) this.#pending.add(line);
    // Good lines of an outbox set aside as corrupt are not on disk any more: write them back.
    if (options.outbox !== undefined && options.outbox.file.lines === 0 && this.#pending.size > 0) void this.#persist();
    this.#kick();
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
    return this.#persist();
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
    await this.#persist(); // the set as it is now (and a last try if the previous write failed)
    const outbox = this.#options.outbox?.file;
    if (this.#pending.size > 0 && outbox !== undefined && !this.#outboxFailing) {
      this.#options.logger.warn(
        { url: redacted(this.#options.url), tenants: this.#pending.size, outbox: outbox.file },
        'signed audit checkpoints not delivered to AUDIT_CHECKPOINT_WEBHOOK_URL before shutdown; they stay in the outbox and are sent first at the next start with this DATA_DIR',
      );
    } else if (this.#pending.size > 0) {
      this.#options.logger.error(
        { url: redacted(this.#options.url), tenants: this.#pending.size, events: this.#pending.events, outbox: outbox?.file },
        'signed audit checkpoints not delivered to AUDIT_CHECKPOINT_WEBHOOK_URL before shutdown and not kept in the outbox (it could not be written); they are dropped (the next checkpoint of each tenant covers them). Check that DATA_DIR is writable and has room',
      );
    }
    await this.#pool.destroy();
  }

  /** Write the waiting set to the outbox, coalescing changes made while a write is under way. Never rejects. */
  #persist(): Promise<void> {
    if (this.#options.outbox === undefined) return Promise.resolve();
    this.#outboxDirty = true;
    this.#persisting ??= this.#persistLoop();
    return this.#persisting;
  }

  async #persistLoop(): Promise<void> {
    const outbox = this.#options.outbox!.file;
    try {
      while (this.#outboxDirty) {
        this.#outboxDirty = false;
        try {
          await outbox.write(this.#waiting());
          this.#options.observer?.outboxWritten(outbox.lines);
          if (this.#outboxFailing) this.#options.logger.info({ outbox: outbox.file, lines: outbox.lines }, 'the audit checkpoint outbox is written again');
          this.#outboxFailing = false;
        } catch (error) {
          this.#options.observer?.outboxFailed();
          if (!this.#outboxFailing) {
            this.#options.logger.error(
              { err: error, outbox: outbox.file },
              'could not write the audit checkpoint outbox; the waiting checkpoints are still delivered from memory, but a stop or crash before that loses them. Check that DATA_DIR is writable and has room',
            );
          }
          this.#outboxFailing = true;
        }
      }
    } finally {
      this.#persisting = undefined;
    }
  }

  /** Every line taken and not delivered: the request being tried and what waits, the newest per tenant. */
  #waiting(): SignedCheckpoint[] {
    const byTenant = new Map(this.#inflight ?? []);
    for (const line of this.#pending.values()) {
      const known = byTenant.get(line.tenant);
      byTenant.set(line.tenant, known === undefined ? line : mergeNewest(known, line));
    }
    return [...byTenant.values()];
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
              const refused = error instanceof CheckpointWebhookError && error.refused;
              if (refused) this.#options.observer?.refused();
              if (refused && !this.#refusalLogged && !signal.aborted) {
                this.#refusalLogged = true;
                this.#options.logger.error(
                  { err: error, url: redacted(this.#options.url), tenants: chunk.size },
                  'AUDIT_CHECKPOINT_WEBHOOK_URL refuses the signed audit checkpoints (401/403: a wrong AUDIT_CHECKPOINT_WEBHOOK_TOKEN; 404: a wrong path; other 4xx: the receiver does not take these bodies); they are kept and tried again every AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS. Fix the token, the URL or the receiver',
                );
              } else if (attempts === 1 && !refused && !signal.aborted) {
                this.#options.logger.error(
                  { err: error, url: redacted(this.#options.url), tenants: chunk.size },
                  'could not deliver signed audit checkpoints to AUDIT_CHECKPOINT_WEBHOOK_URL; retrying with backoff, keeping the newest per tenant meanwhile',
                );
              }
              // A refusal is not retried sooner than the longest backoff (the retry then goes at once).
              if (refused) await sleep(this.#options.retryMaxDelayMs, undefined, { signal, ref: false }).catch(() => {});
              throw error;
            }
          },
          signal,
        );
        this.#inflight = undefined; // delivered: no longer counted as unexported when the observer reads it
        this.#refusalLogged = false;
        void this.#persist(); // delivered lines leave the outbox
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
    if (isRefusal(statusCode)) {
      throw new CheckpointWebhookError(`the receiver refused them: it answered ${statusCode}`, { statusCode, refused: true, retryAfterWaited: true });
    }
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
