/**
 * Which signals start the close sequence, and when a repeat forces exit at once.
 *
 * `npm start` forwards SIGINT and SIGTERM to the service, and a terminal's Ctrl-C reaches the
 * service directly too (it is in npm's process group), so one Ctrl-C arrives twice within
 * milliseconds; so does one `systemctl stop` of a unit that runs npm (systemd signals the whole
 * cgroup, npm forwards). A repeat within `echoWindowMs` of the first signal is that echo and is
 * ignored; a signal after it is a second request, which forces exit (the operator's way out of a
 * drain that takes too long).
 */
export const SHUTDOWN_SIGNALS = ['SIGINT', 'SIGTERM'] as const;
export type ShutdownSignal = (typeof SHUTDOWN_SIGNALS)[number];

export interface ShutdownSignalOptions {
  /** The first signal: start the close sequence. */
  onShutdown(signal: ShutdownSignal): void;
  /** A signal after the echo window: exit now. */
  onForce(signal: ShutdownSignal): void;
  /** A repeat inside the window was ignored as an echo (for a debug log line). */
  onEcho?(signal: ShutdownSignal): void;
  /** Default 1000 ms: npm's forward lands within milliseconds; a person's second Ctrl-C later. */
  readonly echoWindowMs?: number;
  readonly now?: () => number;
  /** Where the signals come from; the process unless a test passes an emitter. */
  readonly target?: Pick<NodeJS.EventEmitter, 'on' | 'removeListener'>;
}

/** Listen for SIGINT/SIGTERM; returns a function that stops listening. */
export function onShutdownSignals(options: ShutdownSignalOptions): () => void {
  const { echoWindowMs = 1000, now = Date.now, target = process } = options;
  let firstAtMs: number | undefined;
  const listener = (signal: ShutdownSignal) => {
    if (firstAtMs === undefined) {
      firstAtMs = now();
      options.onShutdown(signal);
    } else if (now() - firstAtMs < echoWindowMs) {
      options.onEcho?.(signal);
    } else {
      options.onForce(signal);
    }
  };
  for (const signal of SHUTDOWN_SIGNALS) target.on(signal, listener);
  return () => {
    for (const signal of SHUTDOWN_SIGNALS) target.removeListener(signal, listener);
  };
}
