/**
 * Answers decided in one poll phase, written together in the check phase that follows it.
 *
 * With DURABILITY=memory a POST /event is queued synchronously, and its 202 used to be written at
 * once, between the reads of the other connections' requests: each response's send woke the
 * (sleeping) client on the other core, and that wake-up is most of a loopback send's cost. In WAL
 * mode answers already leave together, when the group fsync returns, and the send was 14 % of the
 * main thread's busy time against 33 % in memory mode. Waiting for the end of the poll phase costs
 * an event at most the rest of one loop turn, and every request of that turn shares one promise.
 */
let pending: Promise<void> | undefined;
let resolvePending: (() => void) | undefined;

function release(): void {
  const resolve = resolvePending;
  pending = undefined;
  resolvePending = undefined;
  resolve?.();
}

/** Resolves in the next check phase (setImmediate): one promise for every caller until then. */
export function nextCheckPhase(): Promise<void> {
  if (pending === undefined) {
    pending = new Promise<void>((resolve) => {
      resolvePending = resolve;
    });
    setImmediate(release);
  }
  return pending;
}
