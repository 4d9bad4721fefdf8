/**
 * Watches the running service from outside, as an operator's tools would: its RSS and open file
 * descriptors (/proc), whether /healthz answers within 1 s, and its /metrics (commits, queue
 * depth, WAL bytes, event-loop delay). Commit times come from ingest_events_stored_total +
 * ingest_events_duplicate_total rising between two scrapes 100 ms apart: "the first commit after
 * the heal" is the first scrape that saw them rise.
 */
import { readFile, readdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceProcess } from './service-process.ts';

const SCRAPE_EVERY_MS = 100;
const HEALTH_EVERY_MS = 250;
const HEALTH_LIMIT_MS = 1000;

export interface Sample {
  readonly atMs: number;
  readonly rssBytes: number;
  readonly fds: number;
  readonly walBytes: number;
  readonly eventLoopP99Ms: number;
  readonly queueDepth: number;
}

function metric(text: string, name: string): number {
  const match = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

export class ServiceMonitor {
  #service: ServiceProcess | undefined;
  /** The service may be down (a kill or restart under way): /healthz failures are not counted. */
  #expectUp = false;
  #running = false;
  #loops: Promise<void>[] = [];
  #lastCommitted = 0;
  #lastPid = 0;
  readonly commitTimesMs: number[] = [];
  readonly samples: Sample[] = [];
  readonly depthSamples: { atMs: number; depth: number }[] = [];
  maxRssBytes = 0;
  /** /healthz answers slower than 1 s (or failed) while the service was expected up. */
  slowHealth = 0;
  maxHealthMs = 0;

  watch(service: ServiceProcess | undefined, expectUp: boolean): void {
    this.#service = service;
    this.#expectUp = expectUp;
  }

  expectUp(up: boolean): void {
    this.#expectUp = up;
  }

  start(): void {
    this.#running = true;
    this.#loops = [this.#scrapeLoop(), this.#healthLoop()];
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  /** The first commit seen at or after `sinceMs`, within `timeoutMs`; undefined if none. */
  async firstCommitAfter(sinceMs: number, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.commitTimesMs.find((at) => at >= sinceMs);
      if (found !== undefined) return found;
      if (Date.now() > deadline) return undefined;
      await sleep(SCRAPE_EVERY_MS / 2);
    }
  }

  /** The first time at or after `sinceMs` the queue was seen at or below `depth`, within `timeoutMs`. */
  async queueAtMost(depth: number, sinceMs: number, timeoutMs: number): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.depthSamples.find((sample) => sample.atMs >= sinceMs && sample.depth <= depth);
      if (found !== undefined) return found.atMs;
      if (Date.now() > deadline) return undefined;
      await sleep(SCRAPE_EVERY_MS / 2);
    }
  }

  async #scrapeLoop(): Promise<void> {
    let lastSampleMs = 0;
    while (this.#running) {
      const service = this.#service;
      if (service?.running) {
        try {
          const text = await (await fetch(`${service.origin}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
          const now = Date.now();
          const committed = metric(text, 'ingest_events_stored_total') + metric(text, 'ingest_events_duplicate_total');
          if (service.pid !== this.#lastPid) {
            this.#lastPid = service.pid;
            this.#lastCommitted = 0;
          }
          if (committed > this.#lastCommitted) this.commitTimesMs.push(now);
          this.#lastCommitted = committed;
          const depth = metric(text, 'ingest_queue_depth');
          this.depthSamples.push({ atMs: now, depth });
          if (this.depthSamples.length > 20_000) this.depthSamples.splice(0, 10_000);
          const rssBytes = await rssOf(service.pid);
          this.maxRssBytes = Math.max(this.maxRssBytes, rssBytes);
          if (now - lastSampleMs >= 5000) {
            lastSampleMs = now;
            this.samples.push({
              atMs: now,
              rssBytes,
              fds: await fdsOf(service.pid),
              walBytes: metric(text, 'ingest_wal_bytes'),
              eventLoopP99Ms: metric(text, 'nodejs_eventloop_lag_p99_seconds') * 1000,
              queueDepth: depth,
            });
          }
        } catch {
          // down, starting or stopping: the health loop decides whether that counts
        }
      }
      await sleep(SCRAPE_EVERY_MS);
    }
  }

  async #healthLoop(): Promise<void> {
    while (this.#running) {
      const service = this.#service;
      if (service?.running && this.#expectUp) {
        const started = Date.now();
        let ok = false;
        try {
          const response = await fetch(`${service.origin}/healthz`, { signal: AbortSignal.timeout(HEALTH_LIMIT_MS) });
          await response.text();
          ok = response.status === 200;
        } catch {
          ok = false;
        }
        const tookMs = Date.now() - started;
        // Only while still expected up: a kill issued meanwhile makes the answer fail, rightly.
        if (this.#expectUp && this.#service === service && service.running) {
          this.maxHealthMs = Math.max(this.maxHealthMs, tookMs);
          if (!ok || tookMs > HEALTH_LIMIT_MS) this.slowHealth += 1;
        }
      }
      await sleep(HEALTH_EVERY_MS);
    }
  }
}

async function rssOf(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    return kib ? Number(kib) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function fdsOf(pid: number): Promise<number> {
  try {
    return (await readdir(`/proc/${pid}/fd`)).length;
  } catch {
    return 0;
  }
}
