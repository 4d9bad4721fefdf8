/**
 * The baseline for poison-lag.ts: the service itself (src/runtime.ts, the same app, batcher,
 * admission, metrics and COPY sink), with its write path replaced by one without poison
 * isolation: a batch that fails is retried whole, after a fixed delay, until it succeeds — which
 * a batch holding an event the database refuses for good never does. DURABILITY=memory: 202 once
 * queued, as the naive design would.
 *
 * Configured like the service (src/config.ts) plus RETRY_FIXED_DELAY_MS (default 100).
 * SIGTERM: drain for up to 2 s, then exit (3 when events were left unstored).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { IngestRuntime } from '../../src/runtime.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import type { Sink, WriteResult } from '../../src/sink/sink.ts';

/** The whole batch, again and again, until it commits (or the shutdown deadline aborts it). */
class WholeBatchRetrySink implements Sink {
  readonly #inner: Sink;
  readonly #delayMs: number;
  readonly #onRetry: () => void;

  constructor(inner: Sink, delayMs: number, onRetry: () => void) {
    this.#inner = inner;
    this.#delayMs = delayMs;
    this.#onRetry = onRetry;
  }

  async write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    for (;;) {
      try {
        return await this.#inner.write(batch, options);
      } catch (error) {
        if (options.signal.aborted) throw error;
        this.#onRetry();
        await delay(this.#delayMs, undefined, { signal: options.signal });
      }
    }
  }
}

const config = loadConfig({ AUTH: 'off', ...process.env, DURABILITY: 'memory' });
const retryDelayMs = Number(process.env.RETRY_FIXED_DELAY_MS ?? 100);
const logger = pino({ level: config.logLevel });
let onRetry = () => {};
const runtime = await IngestRuntime.start({
  config,
  logger,
  replaceWritePath: (base) => new WholeBatchRetrySink(base, retryDelayMs, () => onRetry()),
});
onRetry = () => runtime.metrics.retries.inc();

process.once('SIGTERM', () => {
  void runtime.close(2000).then((report) => process.exit(report.unstored > 0 ? 3 : 0));
});

await runtime.listen();
