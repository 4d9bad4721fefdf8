import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import FakeTimers from '@sinonjs/fake-timers';
import { BrokenCircuitError } from 'cockatiel';
import { BreakerSink, type BreakerState } from '../../src/sink/breaker-sink.ts';
import { PoisonSplittingSink } from '../../src/sink/poison-splitting-sink.ts';
import { RetryingSink } from '../../src/sink/retrying-sink.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { fakeEvents, ScriptedSink, sqlError } from '../helpers/scripted-sink.ts';

const signal = new AbortController().signal;
const isPoison = (event: QueuedEvent) => event.row.includes('poison');

describe('PoisonSplittingSink', () => {
  function setup(poison: number[], size: number) {
    const inner = new ScriptedSink((batch) => {
      if (batch.some(isPoison)) throw sqlError('23514', 'new row violates check constraint');
    });
    const deadLettered: { events: readonly QueuedEvent[]; attempts: number; code: string }[] = [];
    const sink = new PoisonSplittingSink(inner, {
      deadLetter: {
        write: async (events, error, attempts) => {
          deadLettered.push({ events, attempts, code: (error as { code: string }).code });
          await Promise.resolve();
        },
      },
    });
    return { inner, sink, deadLettered, events: fakeEvents(size, new Set(poison)) };
  }

  it('isolates one poison event of 512 in O(log n) statements and stores the other 511', async () => {
    const { inner, sink, deadLettered, events } = setup([300], 512);
    const result = await sink.write(events, { signal });
    assert.deepEqual(result, { inserted: 511, deadLettered: [300] });
    assert.equal(deadLettered.length, 1);
    assert.equal(deadLettered[0]!.events[0]!.id, events[300]!.id);
    assert.equal(deadLettered[0]!.code, '23514');
    assert.equal(deadLettered[0]!.attempts, 10, 'one statement at each of the 10 levels of halving');
    assert.ok(inner.calls.length <= 2 * Math.log2(512) + 1, `${inner.calls.length} statements`);
  });

  it('isolates k poison events in about k log n statements', async () => {
    const poison = [3, 77, 400, 401];
    const { inner, sink, events } = setup(poison, 512);
    const result = await sink.write(events, { signal });
    assert.deepEqual(result, { inserted: 508, deadLettered: poison });
    assert.ok(inner.calls.length <= poison.length * 2 * Math.log2(512) + 1, `${inner.calls.length} statements`);
  });

  it('dead-letters the whole batch when every event is poison, one by one', async () => {
    const { sink, deadLettered, events } = setup([0, 1, 2], 3);
    assert.deepEqual(await sink.write(events, { signal }), { inserted: 0, deadLettered: [0, 1, 2] });
    assert.equal(deadLettered.length, 3);
  });

  it('passes a transient failure through without splitting or dead-lettering', async () => {
    const inner = new ScriptedSink(() => {
      throw sqlError('57P01', 'terminating connection due to administrator command');
    });
    const deadLetters: unknown[] = [];
    const sink = new PoisonSplittingSink(inner, {
      deadLetter: {
        write: (events) => {
          deadLetters.push(events);
          return Promise.resolve();
        },
      },
    });
    await assert.rejects(sink.write(fakeEvents(8), { signal }), { code: '57P01' });
    assert.equal(inner.calls.length, 1);
    assert.equal(deadLetters.length, 0);
  });
});

describe('RetryingSink', () => {
  let clock: ReturnType<typeof FakeTimers.install>;
  beforeEach(() => {
    clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => clock.uninstall());

  it('retries transient failures with backoff until the write succeeds', async () => {
    const inner = new ScriptedSink((_batch, call) => {
      if (call < 4) throw sqlError('40001', 'could not serialize access');
    });
    const retried: number[] = [];
    const sink = new RetryingSink(inner, { maxAttempts: 0, baseDelayMs: 100, maxDelayMs: 1000, onRetry: (_e, attempt) => retried.push(attempt) });
    const write = sink.write(fakeEvents(3), { signal });
    await clock.tickAsync(10_000);
    assert.deepEqual(await write, { inserted: 3, deadLettered: [] });
    assert.equal(inner.calls.length, 4);
    assert.equal(retried.length, 3);
  });

  it('does not retry a permanent failure', async () => {
    const inner = new ScriptedSink(() => {
      throw sqlError('22P02', 'invalid input syntax');
    });
    const sink = new RetryingSink(inner, { maxAttempts: 0, baseDelayMs: 100, maxDelayMs: 1000 });
    await assert.rejects(sink.write(fakeEvents(1), { signal }), { code: '22P02' });
    assert.equal(inner.calls.length, 1);
  });

  it('gives up after maxAttempts tries in all', async () => {
    const inner = new ScriptedSink(() => {
      throw sqlError('08006', 'connection failure');
    });
    const sink = new RetryingSink(inner, { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1000 });
    const write = assert.rejects(sink.write(fakeEvents(1), { signal }), { code: '08006' });
    await clock.tickAsync(10_000);
    await write;
    assert.equal(inner.calls.length, 3);
  });

  it('stops waiting out a backoff the moment the drain deadline aborts it', async () => {
    const inner = new ScriptedSink(() => {
      throw sqlError('08006', 'connection failure');
    });
    const sink = new RetryingSink(inner, { maxAttempts: 0, baseDelayMs: 60_000, maxDelayMs: 60_000 });
    const abort = new AbortController();
    const write = sink.write(fakeEvents(1), { signal: abort.signal });
    const rejected = assert.rejects(write);
    await clock.tickAsync(10);
    abort.abort(new Error('deadline'));
    await clock.tickAsync(10);
    await rejected;
    assert.equal(inner.calls.length, 1, 'no further attempt after the abort');
  });
});

describe('BreakerSink', () => {
  let clock: ReturnType<typeof FakeTimers.install>;
  beforeEach(() => {
    clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => clock.uninstall());

  it('goes closed → open after 5 failures → half-open after 30 s → closed on a good probe, open again on a bad one', async () => {
    let healthy = false;
    const inner = new ScriptedSink(() => {
      if (!healthy) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    });
    const transitions: BreakerState[] = [];
    const breaker = new BreakerSink(inner, { failureThreshold: 5, openMs: 30_000, onStateChange: (s) => transitions.push(s) });
    const write = () => breaker.write(fakeEvents(1), { signal });

    for (let i = 0; i < 5; i += 1) await assert.rejects(write(), { code: 'ECONNREFUSED' });
    assert.equal(breaker.state, 'open');
    await assert.rejects(write(), BrokenCircuitError);
    assert.equal(inner.calls.length, 5, 'nothing is sent while open');

    await clock.tickAsync(29_999);
    await assert.rejects(write(), BrokenCircuitError);
    await clock.tickAsync(1);
    // The probe: a bad one opens the breaker again.
    await assert.rejects(write(), { code: 'ECONNREFUSED' });
    assert.equal(breaker.state, 'open');
    assert.equal(inner.calls.length, 6);

    await clock.tickAsync(30_000);
    healthy = true;
    assert.deepEqual(await write(), { inserted: 1, deadLettered: [] });
    assert.equal(breaker.state, 'closed');
    assert.deepEqual(transitions, ['open', 'half_open', 'open', 'half_open', 'closed']);
  });

  it('does not count permanent (data) failures toward opening', async () => {
    const inner = new ScriptedSink(() => {
      throw sqlError('23514');
    });
    const breaker = new BreakerSink(inner, { failureThreshold: 2, openMs: 30_000 });
    for (let i = 0; i < 5; i += 1) await assert.rejects(breaker.write(fakeEvents(1), { signal }), { code: '23514' });
    assert.equal(breaker.state, 'closed');
  });

  it('lets exactly one probe batch through while half-open; the others wait for its verdict', async () => {
    let release: () => void = () => {};
    let failing = true;
    let reached = 0;
    const breaker = new BreakerSink(
      {
        write: async (batch) => {
          reached += 1;
          if (failing) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
          await new Promise<void>((resolve) => (release = resolve));
          return { inserted: batch.length, deadLettered: [] };
        },
      },
      { failureThreshold: 1, openMs: 1000 },
    );
    await assert.rejects(breaker.write(fakeEvents(1), { signal }));
    await clock.tickAsync(1000);
    failing = false;
    const probe = breaker.write(fakeEvents(1), { signal });
    const waiting = breaker.write(fakeEvents(1), { signal });
    await clock.tickAsync(0);
    assert.equal(breaker.state, 'half_open');
    assert.equal(reached, 2, 'the failed call and the probe only');
    release();
    await probe;
    assert.equal(breaker.state, 'closed');
    await clock.tickAsync(0);
    release();
    await waiting;
    assert.equal(reached, 3);
  });

  describe('recovery by probing, after connection failures', () => {
    const refused = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });

    it('probes on a growing, capped backoff while the database stays down, and never sends a batch meanwhile', async () => {
      const inner = new ScriptedSink(() => {
        throw refused();
      });
      const probeTimes: number[] = [];
      const breaker = new BreakerSink(inner, {
        failureThreshold: 1,
        openMs: 3_600_000,
        probe: async () => {
          probeTimes.push(Date.now());
          await Promise.resolve();
          throw refused();
        },
        probeBackoff: { initialDelayMs: 250, maxDelayMs: 2000 },
      });
      const openedAt = Date.now();
      await assert.rejects(breaker.write(fakeEvents(1), { signal }), { code: 'ECONNREFUSED' });
      assert.equal(breaker.state, 'open');
      assert.equal(breaker.recovery, 'probe');
      const waiting = breaker.write(fakeEvents(1), { signal: AbortSignal.timeout(3_600_000) });
      waiting.catch(() => {});
      await clock.tickAsync(60_000);
      assert.equal(inner.calls.length, 1, 'only the write that failed reached the sink');
      assert.ok(probeTimes[0]! - openedAt <= 1000, `the first probe ${probeTimes[0]! - openedAt} ms after opening`);
      const gaps = probeTimes.slice(1).map((time, i) => time - probeTimes[i]!);
      assert.ok(gaps.every((gap) => gap <= 2000), `every gap within the 2 s cap: ${gaps.join(', ')}`);
      const early = gaps.slice(0, 2).reduce((a, b) => a + b, 0) / 2;
      const late = gaps.slice(-10).reduce((a, b) => a + b, 0) / 10;
      assert.ok(late > early * 2, `probes back off: mean gap ${early} ms at first, ${late} ms after a minute`);
      assert.ok(probeTimes.length <= 60, `${probeTimes.length} probes in a minute (a fixed 250 ms would be 240)`);
      breaker.close();
    });

    it('keeps one probe schedule when it closes and opens again while a probe is running', async () => {
      // Write 1 fails (opens, probing); write 2, already in flight, succeeds while the first probe
      // runs (closes); write 3 fails (opens again). The first probe's late failure must not start a
      // second schedule beside the new opening's.
      let finishSlowWrite: () => void = () => {};
      let call = 0;
      const inner = {
        write: async (): Promise<{ inserted: number; deadLettered: [] }> => {
          call += 1;
          if (call === 1) await new Promise<void>((resolve) => (finishSlowWrite = resolve));
          else throw refused();
          return { inserted: 1, deadLettered: [] };
        },
      };
      let probes = 0;
      const breaker = new BreakerSink(inner, {
        failureThreshold: 1,
        openMs: 3_600_000,
        probe: async () => {
          probes += 1;
          await new Promise((resolve) => setTimeout(resolve, 1000));
          throw refused();
        },
        probeBackoff: { initialDelayMs: 100, maxDelayMs: 100 },
      });
      const slow = breaker.write(fakeEvents(1), { signal });
      const first = breaker.write(fakeEvents(1), { signal });
      await assert.rejects(first, { code: 'ECONNREFUSED' });
      assert.equal(breaker.state, 'open');
      await clock.tickAsync(300); // the first probe is running
      finishSlowWrite();
      await slow;
      assert.equal(breaker.state, 'closed');
      await assert.rejects(breaker.write(fakeEvents(1), { signal }), { code: 'ECONNREFUSED' });
      assert.equal(breaker.state, 'open');
      const before = probes;
      await clock.tickAsync(11_000);
      // One schedule: a probe every 100 ms + 1 s of probing ≈ 10 in 11 s; two schedules would be ~20.
      assert.ok(probes - before <= 11, `${probes - before} probes in 11 s`);
      breaker.close();
    });

    it('lets the waiting writes through the moment a probe answers: one test batch, then the rest', async () => {
      let healthy = false;
      const inner = new ScriptedSink(() => {
        if (!healthy) throw refused();
      });
      const transitions: BreakerState[] = [];
      const probeResults: string[] = [];
      const breaker = new BreakerSink(inner, {
        failureThreshold: 2,
        openMs: 3_600_000,
        probe: async () => {
          await Promise.resolve();
          if (!healthy) throw refused();
        },
        onStateChange: (state) => transitions.push(state),
        onProbe: (result) => probeResults.push(result),
      });
      for (let i = 0; i < 2; i += 1) await assert.rejects(breaker.write(fakeEvents(1), { signal }));
      const waiting = [breaker.write(fakeEvents(1), { signal }), breaker.write(fakeEvents(1), { signal })];
      await clock.tickAsync(5_000);
      assert.equal(inner.calls.length, 2, 'no batch while open');
      assert.ok(probeResults.length >= 2 && probeResults.every((r) => r === 'failure'));
      healthy = true;
      await clock.tickAsync(2_000);
      await Promise.all(waiting);
      assert.equal(inner.calls.length, 4);
      assert.equal(breaker.state, 'closed');
      assert.deepEqual(transitions, ['open', 'half_open', 'closed']);
      assert.equal(probeResults.at(-1), 'success');
    });

    it('closes on the answer of a probe when no batch waits to test it (an idle service is not left half-open)', async () => {
      let healthy = false;
      const inner = new ScriptedSink(() => {
        if (!healthy) throw refused();
      });
      const transitions: BreakerState[] = [];
      const breaker = new BreakerSink(inner, {
        failureThreshold: 1,
        openMs: 3_600_000,
        probe: async () => {
          await Promise.resolve();
          if (!healthy) throw refused();
        },
        onStateChange: (state) => transitions.push(state),
      });
      await assert.rejects(breaker.write(fakeEvents(1), { signal }));
      await clock.tickAsync(3_000);
      assert.equal(breaker.state, 'open');
      healthy = true;
      await clock.tickAsync(2_500);
      assert.equal(breaker.state, 'closed');
      assert.deepEqual(transitions, ['open', 'closed']);
    });

    it('a write waiting at the open breaker ends when its signal aborts (the drain deadline)', async () => {
      const inner = new ScriptedSink(() => {
        throw refused();
      });
      const breaker = new BreakerSink(inner, { failureThreshold: 1, openMs: 3_600_000, probe: () => Promise.reject(refused()) });
      await assert.rejects(breaker.write(fakeEvents(1), { signal }));
      const deadline = new AbortController();
      const waiting = breaker.write(fakeEvents(1), { signal: deadline.signal });
      await clock.tickAsync(1000);
      deadline.abort(new Error('drain deadline'));
      await assert.rejects(waiting, /drain deadline/);
      breaker.close();
    });

    it('waits out openMs instead when no failure of the run was a connection failure (a lock: SELECT 1 would answer)', async () => {
      const inner = new ScriptedSink(() => {
        throw Object.assign(new Error('copy timeout'), { code: 'SINK_ERR_COPY_TIMEOUT' });
      });
      let probes = 0;
      const breaker = new BreakerSink(inner, {
        failureThreshold: 2,
        openMs: 30_000,
        probe: async () => {
          probes += 1;
          await Promise.resolve();
        },
      });
      for (let i = 0; i < 2; i += 1) await assert.rejects(breaker.write(fakeEvents(1), { signal }));
      assert.equal(breaker.recovery, 'window');
      await assert.rejects(breaker.write(fakeEvents(1), { signal }), BrokenCircuitError);
      await clock.tickAsync(30_000);
      assert.equal(breaker.state, 'half_open');
      assert.equal(probes, 0);
    });
  });
});
