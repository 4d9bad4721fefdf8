import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { onShutdownSignals, type ShutdownSignal } from '../../src/shutdown-signals.ts';

function harness() {
  const target = new EventEmitter();
  let nowMs = 0;
  const seen: string[] = [];
  const stop = onShutdownSignals({
    target,
    now: () => nowMs,
    onShutdown: (signal) => seen.push(`shutdown ${signal}`),
    onForce: (signal) => seen.push(`force ${signal}`),
    onEcho: (signal) => seen.push(`echo ${signal}`),
  });
  return {
    seen,
    stop,
    send(signal: ShutdownSignal, atMs: number) {
      nowMs = atMs;
      target.emit(signal, signal);
    },
    target,
  };
}

describe('shutdown signals', () => {
  it('starts the close once for a Ctrl-C that arrives twice (the terminal and npm forwarding it)', () => {
    const h = harness();
    h.send('SIGINT', 0);
    h.send('SIGINT', 3);
    assert.deepEqual(h.seen, ['shutdown SIGINT', 'echo SIGINT']);
  });

  it('forces exit on a second signal after the echo window', () => {
    const h = harness();
    h.send('SIGTERM', 0);
    h.send('SIGTERM', 999);
    h.send('SIGINT', 1000);
    assert.deepEqual(h.seen, ['shutdown SIGTERM', 'echo SIGTERM', 'force SIGINT']);
  });

  it('stops listening when asked', () => {
    const h = harness();
    h.stop();
    assert.equal(h.target.listenerCount('SIGINT') + h.target.listenerCount('SIGTERM'), 0);
  });
});
