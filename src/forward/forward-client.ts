import { setTimeout as sleep } from 'node:timers/promises';
import { gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { Pool } from 'undici';
import { ForwardSinkError, unavailable } from './errors.ts';
import { parseRetryAfter } from '@audit-ingest/client';

const gzipAsync = promisify(gzip);

/** Answers are read up to this size (a receiver's bulk answer lists at most 100 issues). */
const MAX_ANSWER_BYTES = 1024 * 1024;

export interface ForwardClientOptions {
  /** Base URL of the receiving instance (FORWARD_URL); its path, if any, is kept as a prefix. */
  readonly url: string;
  readonly apiKey: string | undefined;
  /** Connections kept to the receiver: one per flush slot (FLUSH_CONCURRENCY). */
  readonly connections: number;
  /** Bound on one request: connect, headers and body (FORWARD_TIMEOUT_MS). */
  readonly timeoutMs: number;
  /** Content-Encoding: gzip on request bodies (FORWARD_GZIP). */
  readonly gzip: boolean;
  /** A longer Retry-After is waited only this long (FORWARD_MAX_RETRY_AFTER_MS); the retry backoff follows. */
  readonly maxRetryAfterMs: number;
}

/** What the receiver answered to one POST /events. */
export interface ForwardAnswer {
  readonly statusCode: number;
  /** Its JSON body, undefined when it was not JSON. */
  readonly body: unknown;
  /** Retry-After in milliseconds, when present and valid. */
  readonly retryAfterMs: number | undefined;
}

/**
 * HTTP to another instance of this service over an undici Pool (keep-alive connections, one per
 * flush slot): POST /events with an NDJSON body, GET /readyz and /healthz. Only transport lives
 * here; what an answer means for the batch is the sink's business.
 */
export class ForwardClient {
  readonly #pool: Pool;
  readonly #prefix: string;
  readonly #options: ForwardClientOptions;
  /** Bytes of request bodies as sent (after compression): what crossed the link. */
  bytesSent = 0;

  constructor(options: ForwardClientOptions) {
    const url = new URL(options.url);
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#options = options;
    this.#pool = new Pool(url.origin, {
      connections: options.connections,
      connectTimeout: options.timeoutMs,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      keepAliveTimeout: 30_000,
    });
  }

  async postEvents(ndjson: string, signal: AbortSignal): Promise<ForwardAnswer> {
    const raw = Buffer.from(ndjson);
    const body = this.#options.gzip ? await gzipAsync(raw) : raw;
    const headers: Record<string, string> = {
      'content-type': 'application/x-ndjson',
      accept: 'application/json, application/problem+json',
      ...(this.#options.gzip ? { 'content-encoding': 'gzip' } : {}),
      ...(this.#options.apiKey ? { authorization: `Bearer ${this.#options.apiKey}` } : {}),
    };
    try {
      const response = await this.#pool.request({ path: `${this.#prefix}/events`, method: 'POST', headers, body, signal: this.#bounded(signal) });
      this.bytesSent += body.length;
      const text = await readBounded(response.body);
      return { statusCode: response.statusCode, body: parseJson(text), retryAfterMs: retryAfterMs(response.headers['retry-after']) };
    } catch (error) {
      throw signal.aborted ? (signal.reason as Error) : unavailable(error, 'forwarding a batch');
    }
  }

  /** Resolves when GET `route` answers 200 within `timeoutMs`. */
  async get(route: '/readyz' | '/healthz', timeoutMs: number): Promise<void> {
    try {
      const response = await this.#pool.request({ path: `${this.#prefix}${route}`, method: 'GET', signal: AbortSignal.timeout(timeoutMs) });
      await response.body.dump();
      if (response.statusCode !== 200) throw new ForwardSinkError('FORWARD_ERR_UNAVAILABLE', `the receiver's ${route} answered ${response.statusCode}`, { statusCode: response.statusCode });
    } catch (error) {
      throw unavailable(error, `asking the receiver's ${route}`);
    }
  }

  /** Wait out a Retry-After (capped), or until the drain's signal aborts. */
  async waitRetryAfter(ms: number, signal: AbortSignal): Promise<void> {
    await sleep(Math.min(ms, this.#options.maxRetryAfterMs), undefined, { signal, ref: false }).catch(() => {});
  }

  /** Close the connections; requests in flight are aborted (the drain is over when this is called). */
  async close(): Promise<void> {
    await this.#pool.destroy();
  }

  #bounded(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, AbortSignal.timeout(this.#options.timeoutMs)]);
  }
}

async function readBounded(body: AsyncIterable<Buffer> & { dump(): Promise<void> }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) {
      await body.dump();
      break;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Retry-After as whole seconds or an HTTP date (RFC 9110 §10.2.3), in milliseconds: the client package's reading of it, for Node's header shape. */
export function retryAfterMs(header: string | string[] | undefined, nowMs = Date.now()): number | undefined {
  return parseRetryAfter((Array.isArray(header) ? header[0] : header) ?? null, nowMs);
}
