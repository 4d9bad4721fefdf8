/**
 * The service itself (src/runtime.ts: the same app, batcher, WAL, admission, metrics and COPY
 * sink) for before-after.ts, with two bench-only settings:
 *   BENCH_WRITE_PATH=plain   the batch goes straight to the COPY sink: no retry, breaker, poison
 *                            splitting or dead-letter queue (a failed batch's events fail);
 *                    service (default) the service's own decorated write path.
 *   BENCH_FAULT_EVERY=N      every Nth batch write fails before it reaches the database with a
 *                            transient error (SQLSTATE 40001, serialization failure); 0 = never.
 *   BENCH_WRITE_DELAY_MS=D   every batch write waits D ms first: a slow consumer (overflow.ts).
 * Configured like the service otherwise (src/config.ts). SIGTERM: close within 30 s, then exit.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { IngestRuntime } from '../../src/runtime.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import type { Sink, WriteResult } from '../../src/sink/sink.ts';

/** Delays each write (a slow consumer) and fails every Nth one transiently. */
class TransientFaultSink implements Sink {
  readonly #inner: Sink;
  readonly #every: number;
  readonly #delayMs: number;
  #writes = 0;

  constructor(inner: Sink, every: number, delayMs: number) {
    this.#inner = inner;
    this.#every = every;
    this.#delayMs = delayMs;
  }

  async write(batch: readonly QueuedEvent[], options: { signal: AbortSignal }): Promise<WriteResult> {
    this.#writes += 1;
    if (this.#delayMs > 0) await delay(this.#delayMs, undefined, { signal: options.signal });
    if (this.#every > 0 && this.#writes % this.#every === 0) {
      throw Object.assign(new Error('injected serialization failure (bench)'), { code: '40001' });
    }
    return this.#inner.write(batch, options);
  }
}

const config = loadConfig({ AUTH: 'off', ...process.env });
const faultEvery = Number(process.env.BENCH_FAULT_EVERY ?? 0);
const writeDelayMs = Number(process.env.BENCH_WRITE_DELAY_MS ?? 0);
const plain = process.env.BENCH_WRITE_PATH === 'plain';
const logger = pino({ level: config.logLevel });
const runtime = await IngestRuntime.start({
  config,
  logger,
  wrapBaseSink: (copy) => new TransientFaultSink(copy, faultEvery, writeDelayMs),
  ...(plain ? { replaceWritePath: (base: Sink) => base } : {}),
});

process.once('SIGTERM', () => {
  void runtime.close(30_000).then((report) => process.exit(report.unstored > 0 ? 3 : 0));
});

await runtime.listen();
