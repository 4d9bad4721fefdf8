/**
 * `promise`'s value, or `onDeadline` once `deadlineMs` has passed first (the timer is cleared
 * either way). The promise keeps running; a caller that must stop it does so itself.
 */
export function raceDeadline<T, D = undefined>(promise: Promise<T>, deadlineMs: number, onDeadline?: D): Promise<T | D> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<D>((resolve) => {
    timer = setTimeout(() => resolve(onDeadline as D), deadlineMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
