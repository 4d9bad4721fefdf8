import type { ItemOutcome, Waiter } from './batcher.ts';

/** One waiter per item and a promise of all their outcomes, in order. */
export function outcomeWaiters(count: number): { waiters: Waiter[]; outcomes: Promise<ItemOutcome[]> } {
  const waiters: Waiter[] = [];
  const settled: Promise<ItemOutcome>[] = [];
  for (let i = 0; i < count; i += 1) settled.push(new Promise<ItemOutcome>((resolve) => waiters.push(resolve)));
  return { waiters, outcomes: Promise.all(settled) };
}
