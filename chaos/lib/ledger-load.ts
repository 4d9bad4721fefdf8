/**
 * Load with an obligation ledger: bulk requests (`POST /events`, JSON arrays) at a paced rate from
 * a few connections, every event with an id of the run's making. Every id sent is remembered
 * (so nothing stored can be something never sent), every id answered 2xx is an obligation (it
 * must be stored exactly once, or dead-lettered when it was sent to be refused). Connection
 * errors (the service restarting) are counted and the worker carries on.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';

export interface LoadOptions {
  readonly origin: string;
  /** Events per second, all workers together (0: as fast as the service answers). */
  readonly eventsPerSecond: number;
  /** Events per request. */
  readonly bulk: number;
  readonly connections: number;
  readonly tenant: string;
}

export const POISON_ACTION = 'chaos.poison';

export class LedgerLoad {
  readonly sent = new Set<string>();
  readonly acknowledged = new Set<string>();
  /** The acknowledged ids that were sent to be refused (they belong in the dead-letter queue). */
  readonly poisonAcknowledged = new Set<string>();
  readonly statuses = new Map<number, number>();
  /** Requests that got no answer (refused connection, reset, timeout). */
  errors = 0;
  /** When 2xx answers arrived (ms since epoch, at most one entry per 50 ms). */
  readonly ackTimesMs: number[] = [];
  /** Every this many events, one the database will refuse (action `chaos.poison`); 0: none. Changeable mid-run. */
  poisonEvery = 0;
  readonly #options: LoadOptions;
  readonly #client: Pool;
  #running = false;
  /** Ends the workers' waits at stop(). */
  #stopping = new AbortController();
  #workers: Promise<void>[] = [];
  #nextSendAtMs = 0;
  #sequence = 0;

  constructor(options: LoadOptions) {
    this.#options = options;
    this.#client = new Pool(options.origin, { connections: options.connections, headersTimeout: 15_000, bodyTimeout: 15_000, connectTimeout: 2_000 });
  }

  /** 5xx answers other than 503 (every 503 is a planned refusal; anything else 5xx is a bug). */
  get unexpected5xx(): number {
    let count = 0;
    for (const [status, n] of this.statuses) if (status >= 500 && status !== 503) count += n;
    return count;
  }

  /** The first 2xx at or after `sinceMs`. */
  firstAckAfter(sinceMs: number): number | undefined {
    return this.ackTimesMs.find((at) => at >= sinceMs);
  }

  start(): void {
    this.#running = true;
    this.#stopping = new AbortController();
    this.#nextSendAtMs = Date.now();
    this.#workers = Array.from({ length: this.#options.connections }, () => this.#work());
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#stopping.abort();
    await Promise.all(this.#workers);
  }

  async close(): Promise<void> {
    await this.stop();
    await this.#client.destroy();
  }

  async #pace(): Promise<void> {
    const { eventsPerSecond, bulk } = this.#options;
    if (eventsPerSecond <= 0) return;
    const intervalMs = (1000 * bulk) / eventsPerSecond;
    const now = Date.now();
    // No catching up after a stall beyond one interval per worker: the rate is a ceiling.
    const at = Math.max(this.#nextSendAtMs, now - intervalMs * this.#options.connections);
    this.#nextSendAtMs = at + intervalMs;
    if (at > now) await this.#sleep(at - now);
  }

  async #work(): Promise<void> {
    while (this.#running) {
      await this.#pace();
      if (!this.#running) return;
      const events = Array.from({ length: this.#options.bulk }, () => this.#event());
      for (const event of events) this.sent.add(event.id);
      try {
        const response = await this.#client.request({
          path: '/events',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(events),
        });
        const text = await response.body.text();
        this.statuses.set(response.statusCode, (this.statuses.get(response.statusCode) ?? 0) + 1);
        if (response.statusCode === 202) this.#acknowledge(events, text);
      } catch {
        this.errors += 1;
        await this.#sleep(50);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.#stopping.signal }).catch(() => {});
  }

  #acknowledge(events: readonly ChaosEvent[], body: string): void {
    // A bulk answers which events it took; every one is valid here, so all of them.
    const accepted = (JSON.parse(body) as { accepted?: { index: number }[] }).accepted ?? [];
    for (const { index } of accepted) {
      const event = events[index]!;
      this.acknowledged.add(event.id);
      if (event.action === POISON_ACTION) this.poisonAcknowledged.add(event.id);
    }
    const now = Date.now();
    if (now - (this.ackTimesMs.at(-1) ?? 0) >= 50) this.ackTimesMs.push(now);
  }

  #event(): ChaosEvent {
    this.#sequence += 1;
    const poisonEvery = this.poisonEvery;
    return {
      id: randomUUID(),
      tenant: this.#options.tenant,
      occurred_at: new Date().toISOString(),
      action: poisonEvery > 0 && this.#sequence % poisonEvery === 0 ? POISON_ACTION : 'document.update',
      actor: { id: `user:${this.#sequence % 1000}`, type: 'user' },
      target: { id: `doc:${this.#sequence}`, type: 'document' },
      outcome: 'success',
      metadata: { chaos: true, n: this.#sequence },
    };
  }
}

interface ChaosEvent {
  readonly id: string;
  readonly tenant: string;
  readonly occurred_at: string;
  readonly action: string;
  readonly actor: { id: string; type: string };
  readonly target: { id: string; type: string };
  readonly outcome: string;
  readonly metadata: Record<string, unknown>;
}
