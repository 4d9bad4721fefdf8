/**
 * A synthetic, seeded, replayable arrival schedule: a diurnal base rate of single events (one
 * compressed "day" over the run: a cosine from the trough at the start and end to the peak in the
 * middle, Poisson arrivals around it) plus bursts (e.g. 4,096 events in < 100 ms, sent as bulk
 * NDJSON requests spread over the burst), whose own arrival rate follows the base rate (more
 * bursts by day). The same options and seed always give the same schedule; it is also written to
 * the results directory so a run can be replayed from the file (`--schedule=FILE`).
 */

export interface BurstyOptions {
  readonly seed: number;
  readonly durationSeconds: number;
  /** Single events per second at the trough (start and end of the run) and at the peak (middle). */
  readonly troughPerSecond: number;
  readonly peakPerSecond: number;
  /** Mean bursts per second at the peak (scaled down with the base rate elsewhere). */
  readonly burstsPerSecondAtPeak: number;
  readonly burstEvents: number;
  /** Events per bulk request of a burst. */
  readonly burstRequestEvents: number;
  /** A burst's requests are spread evenly over this many milliseconds. */
  readonly burstSpreadMs: number;
}

export const DEFAULT_BURSTY: Omit<BurstyOptions, 'durationSeconds'> = {
  seed: 12,
  troughPerSecond: 40,
  peakPerSecond: 1200,
  burstsPerSecondAtPeak: 0.5,
  burstEvents: 4096,
  burstRequestEvents: 256,
  burstSpreadMs: 80,
};

/** One request: at `atMs` after the start, `events` events (1: POST /event; more: POST /events). */
export interface Arrival {
  readonly atMs: number;
  readonly events: number;
  /** Index of the burst it belongs to; -1 for the base traffic. */
  readonly burst: number;
}

export interface Schedule {
  readonly options: BurstyOptions;
  readonly arrivals: readonly Arrival[];
  /** Start of each burst, ms. */
  readonly burstStartsMs: readonly number[];
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The base rate at `seconds` into the run: trough at 0 and at the end, peak halfway. */
export function baseRateAt(options: BurstyOptions, seconds: number): number {
  const phase = (1 - Math.cos((2 * Math.PI * seconds) / options.durationSeconds)) / 2;
  return options.troughPerSecond + (options.peakPerSecond - options.troughPerSecond) * phase;
}

/**
 * Non-homogeneous Poisson arrivals by thinning: candidates at the peak rate, each kept with
 * probability rate(t) / peak.
 */
function poissonTimes(random: () => number, durationSeconds: number, peakRate: number, rateAt: (seconds: number) => number): number[] {
  const times: number[] = [];
  if (peakRate <= 0) return times;
  let t = 0;
  for (;;) {
    t += -Math.log(1 - random()) / peakRate;
    if (t >= durationSeconds) return times;
    if (random() * peakRate <= rateAt(t)) times.push(t * 1000);
  }
}

export function makeBurstySchedule(options: BurstyOptions): Schedule {
  const random = seededRandom(options.seed);
  const arrivals: Arrival[] = poissonTimes(random, options.durationSeconds, options.peakPerSecond, (t) => baseRateAt(options, t)).map((atMs) => ({
    atMs,
    events: 1,
    burst: -1,
  }));
  const burstRate = (t: number) => (options.burstsPerSecondAtPeak * baseRateAt(options, t)) / options.peakPerSecond;
  // Bursts end before the run does, so each is replayed whole.
  const burstWindow = Math.max(0, options.durationSeconds - options.burstSpreadMs / 1000);
  const burstStartsMs = poissonTimes(random, burstWindow, options.burstsPerSecondAtPeak, burstRate);
  const requests = Math.ceil(options.burstEvents / options.burstRequestEvents);
  burstStartsMs.forEach((startMs, burst) => {
    for (let r = 0; r < requests; r++) {
      const events = Math.min(options.burstRequestEvents, options.burstEvents - r * options.burstRequestEvents);
      arrivals.push({ atMs: startMs + (r * options.burstSpreadMs) / requests, events, burst });
    }
  });
  arrivals.sort((a, b) => a.atMs - b.atMs);
  return { options, arrivals, burstStartsMs };
}

/** Offered events per whole second of the schedule (index = second). */
export function offeredPerSecond(schedule: Schedule): number[] {
  const seconds = Array.from({ length: Math.ceil(schedule.options.durationSeconds) }, () => 0);
  for (const arrival of schedule.arrivals) {
    const second = Math.floor(arrival.atMs / 1000);
    if (second < seconds.length) seconds[second]! += arrival.events;
  }
  return seconds;
}
