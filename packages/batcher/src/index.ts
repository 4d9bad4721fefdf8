/**
 * @audit-ingest/batcher: a bounded, size/bytes/time-triggered batcher with per-item outcomes,
 * partitions, flush slots and a deadline-bound drain; an AIMD adaptive window; a key coalescer.
 * No dependencies beyond Node. See README.md.
 */
export {
  Batcher,
  type BatcherCounters,
  type BatcherOptions,
  type BatchWindow,
  type EnqueueResult,
  type FlushContext,
  type FlushFunction,
  type FlushPolicy,
  type FlushReason,
  type FlushReport,
  type FlushResult,
  type ItemOutcome,
  type Waiter,
} from './batcher.ts';
export { BatcherClosedError, BatcherDrainTimeoutError } from './errors.ts';
export { CodedError } from './coded-error.ts';
export { outcomeWaiters } from './outcome-waiters.ts';
export { systemClock, type Clock, type TimerHandle } from './clock.ts';
export {
  AdaptiveWindow,
  adaptiveBounds,
  WINDOW_DECISIONS,
  type AdaptiveWindowOptions,
  type BatchObservation,
  type WindowChange,
  type WindowDecision,
} from './adaptive-window.ts';
export { Coalescer, CoalescingMap, type CoalescedEntry, type CoalesceReason, type CoalescerOptions, type CoalesceResult } from './coalescer.ts';
