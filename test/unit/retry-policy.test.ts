import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRetryPolicy, isServerPaced } from '../../src/sink/retry-policy.ts';
import { ForwardSinkError } from '../../src/forward/errors.ts';

/** Runs `failures` through a policy (each thrown once, in order, then success) and returns the delays it chose. */
async function delaysAfter(failures: readonly Error[]): Promise<number[]> {
  const policy = createRetryPolicy({ maxAttempts: failures.length + 1, baseDelayMs: 40, maxDelayMs: 40 }, () => true);
  const delays: number[] = [];
  policy.onRetry((event) => delays.push(event.delay));
  let call = 0;
  const result = await policy.execute(() => {
    const failure = failures[call];
    call += 1;
    if (failure) throw failure;
    return Promise.resolve('stored');
  });
  assert.equal(result, 'stored');
  return delays;
}

describe('retry policy', () => {
  it('retries at once after a failure whose Retry-After was already waited, and backs off after any other', async () => {
    const paced = new ForwardSinkError('FORWARD_ERR_THROTTLED', 'the receiver answered 429', { statusCode: 429, retryAfterWaited: true });
    const unpaced = new ForwardSinkError('FORWARD_ERR_UNAVAILABLE', 'the receiver answered 503', { statusCode: 503 });
    assert.equal(isServerPaced(paced), true);
    assert.equal(isServerPaced(unpaced), false);
    // Full jitter: a backoff is uniform in [0, 40) ms, so five of them all 0 would be a broken policy.
    const delays = await delaysAfter([paced, unpaced, unpaced, unpaced, unpaced, unpaced, paced]);
    assert.equal(delays.length, 7);
    assert.equal(delays[0], 0, 'no backoff added to a waited Retry-After');
    assert.equal(delays[6], 0);
    assert.ok(
      delays.slice(1, 6).some((delay) => delay > 0),
      `an ordinary transient failure backs off: ${delays.join(', ')}`,
    );
  });
});
