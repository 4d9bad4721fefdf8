import { IngestError, type ErrorCode } from '../errors.ts';
import type { RoomWaiters, WaitOutcome } from '../ingest/room-waiters.ts';

export interface QueueView {
  readonly queuedDepth: number;
  readonly capacity: number;
  readonly drainRatePerSecond: number;
  readonly draining: boolean;
  hasRoomFor(count: number, bytes: number): boolean;
}

export type AdmissionDecision =
  | { readonly admit: true }
  | { readonly admit: false; readonly code: ErrorCode; readonly retryAfterSeconds: number };

/** The queue as a request waiting for room sees it (the pipeline). */
export interface RoomView {
  readonly queuedDepth: number;
  readonly reservedEvents: number;
  readonly waiters: RoomWaiters;
  hasUnreservedRoomFor(count: number, bytes: number): boolean;
  couldEverHold(count: number, bytes: number): boolean;
  reserve(count: number, bytes: number): void;
}

/**
 * `depth`: the design card's rule read on one depth sample: 429 as soon as a request would take
 * the queue past the high-water mark, until below the low-water mark (a burst is refused like a
 * stalled database). `standing` (the default): a request that does not fit under the high-water
 * mark waits for room, in FIFO order, up to `waitMs`; only when a wait runs out while the queue is
 * above the mark (it stood there for waitMs: the database is not keeping up) does shedding begin,
 * until below the low-water mark. See DESIGN.md "Admission and fairness".
 */
export type AdmissionPolicy = 'depth' | 'standing';

const MAX_RETRY_AFTER_SECONDS = 60;

/** The one "admitted" answer (frozen, shared): no object per request. */
export const ADMIT: AdmissionDecision = Object.freeze({ admit: true });

/**
 * Load shedding with hysteresis: once the queue passes the high-water mark, intake answers 429
 * until the queue falls below the low-water mark, so the service does not flap at the threshold.
 * A full queue, or a service that is draining, answers 503. Retry-After is the time the measured
 * drain rate needs to bring the queue down to the low-water mark.
 */
export class Admission {
  readonly #queue: QueueView;
  readonly #highWater: number;
  readonly #lowWater: number;
  readonly #policy: AdmissionPolicy;
  readonly #waitMs: number;
  #shedding = false;

  constructor(queue: QueueView, options: { highWater: number; lowWater: number; policy?: AdmissionPolicy; waitMs?: number }) {
    this.#queue = queue;
    this.#highWater = options.highWater;
    this.#lowWater = options.lowWater;
    this.#policy = options.policy ?? 'depth';
    this.#waitMs = options.waitMs ?? 1000;
  }

  get policy(): AdmissionPolicy {
    return this.#policy;
  }

  /** Requests that do not fit wait for room (policy `standing`) instead of being refused. */
  get waits(): boolean {
    return this.#policy === 'standing';
  }

  /** How long a request may wait for room (or its tenant's share) before it is refused. */
  get waitMs(): number {
    return this.#waitMs;
  }

  get shedding(): boolean {
    return this.#shedding;
  }

  decide(count = 1, bytes = 0): AdmissionDecision {
    const queue = this.#queue;
    if (queue.draining) return { admit: false, code: 'INGEST_ERR_DRAINING', retryAfterSeconds: 1 };
    if (this.#policy === 'standing') {
      // Only the standing state refuses here; room is waited for in admitWhenRoom.
      if (this.#shedding && queue.queuedDepth < queue.capacity * this.#lowWater) this.#shedding = false;
      return this.#shedding ? { admit: false, code: 'INGEST_ERR_OVERLOADED', retryAfterSeconds: this.retryAfterSeconds() } : ADMIT;
    }
    const depth = queue.queuedDepth;
    if (this.#shedding) {
      if (depth < queue.capacity * this.#lowWater) this.#shedding = false;
    } else if (depth + count > queue.capacity * this.#highWater) {
      this.#shedding = true;
    }
    if (!queue.hasRoomFor(count, bytes)) {
      return { admit: false, code: 'INGEST_ERR_QUEUE_FULL', retryAfterSeconds: this.retryAfterSeconds() };
    }
    if (this.#shedding) {
      return { admit: false, code: 'INGEST_ERR_OVERLOADED', retryAfterSeconds: this.retryAfterSeconds() };
    }
    return ADMIT;
  }

  /**
   * All-or-nothing admission for `count` events at once (bulk): refused whole, with 429, when they
   * would take the queue past the high-water mark. A large request that does not fit does not
   * turn shedding on for everyone else.
   */
  decideBulk(count: number, bytes: number): AdmissionDecision {
    const single = this.decide(1, 0);
    if (!single.admit) return single;
    const queue = this.#queue;
    if (queue.queuedDepth + count > queue.capacity * this.#highWater || !queue.hasRoomFor(count, bytes)) {
      return { admit: false, code: 'INGEST_ERR_OVERLOADED', retryAfterSeconds: this.retryAfterSeconds() };
    }
    return ADMIT;
  }

  /**
   * Policy `standing`: take room for `count` events of `bytes` under the high-water mark (and
   * within capacity, besides every reservation), waiting for it in FIFO order up to waitMs. The
   * room is reserved on `room` when this returns undefined (room was there: no promise, no wait)
   * or when the promise it returns resolves; the caller releases it. Throws the IngestError
   * to answer otherwise: 429 when shedding, when the wait ran out, or when too many wait already;
   * 503 when the service began to drain. Nothing of the request has been written by then.
   */
  admitWhenRoom(room: RoomView, count: number, bytes: number, signal?: AbortSignal): Promise<void> | undefined {
    const highWater = this.#queue.capacity * this.#highWater;
    const decision = this.decide(count, bytes);
    if (!decision.admit) throw new IngestError(decision.code, undefined, { retryAfterSeconds: decision.retryAfterSeconds });
    // Larger than the whole queue: waiting would not help.
    if (!room.couldEverHold(count, bytes)) throw new IngestError('INGEST_ERR_QUEUE_FULL', undefined, { retryAfterSeconds: this.retryAfterSeconds() });
    // The common case, room and nobody waiting ahead, takes it without building a waiter (no closure per request).
    if (room.waiters.mayGrantAtOnce(true, signal) && grantRoom(room, highWater, count, bytes)) return undefined;
    const tryGrant = (): boolean => grantRoom(room, highWater, count, bytes);
    const outcome = room.waiters.wait({ count, fifo: true, timeoutMs: this.#waitMs, signal, tryGrant });
    if (typeof outcome === 'string') {
      this.#conclude(room, highWater, outcome);
      return undefined;
    }
    return outcome.then((waited) => this.#conclude(room, highWater, waited));
  }

  /** Returns when the room was granted; otherwise throws the refusal. */
  #conclude(room: RoomView, highWater: number, outcome: WaitOutcome): void {
    if (outcome === 'granted') return;
    if (outcome === 'closed') throw new IngestError('INGEST_ERR_DRAINING', undefined, { retryAfterSeconds: 1 });
    if (outcome === 'timeout' && room.queuedDepth + 1 > highWater) {
      // The queue stood above the high-water mark for a whole wait: the database is not keeping
      // up. Shed until it is below the low-water mark; the requests still waiting are refused too.
      this.#shedding = true;
      room.waiters.endAll('timeout', (fifo) => fifo);
    }
    throw new IngestError('INGEST_ERR_OVERLOADED', outcome === 'aborted' ? 'the client went away while its request waited for room' : undefined, {
      retryAfterSeconds: this.retryAfterSeconds(),
    });
  }

  /** Seconds until the queue is back under the low-water mark at the measured drain rate. */
  retryAfterSeconds(): number {
    const queue = this.#queue;
    const excess = Math.max(queue.queuedDepth - queue.capacity * this.#lowWater, 1);
    const rate = queue.drainRatePerSecond;
    if (!(rate > 0)) return MAX_RETRY_AFTER_SECONDS; // nothing has drained yet: the longest wait
    return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(1, Math.ceil(excess / rate)));
  }
}

/** Reserve room for `count` events of `bytes` under the high-water mark, if it is there now. */
function grantRoom(room: RoomView, highWater: number, count: number, bytes: number): boolean {
  const held = room.queuedDepth + room.reservedEvents;
  // A request larger than the high-water mark fits an empty queue (if within capacity).
  if ((held + count > highWater && held > 0) || !room.hasUnreservedRoomFor(count, bytes)) return false;
  room.reserve(count, bytes);
  return true;
}
