import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.ts';
import type { TenantLimitOverride } from './tenant-rate-limiter.ts';

/**
 * Reads the overrides every `intervalMs` on the injected clock and hands them over; a failed read
 * keeps the last ones (logged once per failure streak). The first read is at start.
 */
export interface OverridePollerOptions {
  readonly clock: Clock;
  readonly intervalMs: number;
  readonly logger: Pick<Logger, 'info' | 'warn'>;
  readonly read: () => Promise<TenantLimitOverride[]>;
  readonly apply: (rows: TenantLimitOverride[]) => void;
}

export class OverridePoller {
  readonly #options: OverridePollerOptions;
  #timer: TimerHandle | undefined;
  #stopped = false;
  #failing = false;

  constructor(options: OverridePollerOptions) {
    this.#options = options;
  }

  /** One read now (awaited), then one every interval. */
  async start(): Promise<void> {
    await this.pollOnce();
    this.#schedule();
  }

  async pollOnce(): Promise<void> {
    try {
      this.#options.apply(await this.#options.read());
      if (this.#failing) this.#options.logger.info('tenant limit overrides read again');
      this.#failing = false;
    } catch (error) {
      if (!this.#failing) this.#options.logger.warn({ err: error }, 'cannot read tenant limit overrides; keeping the last ones');
      this.#failing = true;
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#options.clock.setTimeout(() => {
      void this.pollOnce().then(() => this.#schedule());
    }, this.#options.intervalMs);
  }
}
