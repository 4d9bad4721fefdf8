import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PendingCheckpoints, type SignedCheckpoint } from '../../src/audit/checkpoint-destination.ts';

const line = (tenant: string, seq: bigint, events: number): SignedCheckpoint => ({ tenant, seq, text: `${tenant}:${seq}\n`, events });

describe('PendingCheckpoints: at most the newest line per tenant', () => {
  it('a newer head supersedes an older one, and the kept line covers the events of both', () => {
    const pending = new PendingCheckpoints();
    assert.equal(pending.add(line('a', 1n, 10)), 0);
    assert.equal(pending.add(line('b', 4n, 5)), 0);
    assert.equal(pending.add(line('a', 3n, 20)), 1);
    assert.equal(pending.add(line('a', 2n, 1)), 1, 'an older line put back never replaces a newer one');
    assert.equal(pending.size, 2);
    assert.equal(pending.events, 36);
    assert.deepEqual(
      pending.take().map((l) => [l.text, l.events]),
      [
        ['a:3\n', 31],
        ['b:4\n', 5],
      ],
    );
    assert.equal(pending.size, 0);
    assert.equal(pending.events, 0);
  });

  it('take(limit) takes the longest-waiting tenants first; takeTenant takes one', () => {
    const pending = new PendingCheckpoints();
    for (const tenant of ['a', 'b', 'c']) pending.add(line(tenant, 1n, 1));
    pending.add(line('a', 2n, 1)); // replacing keeps a's place in the queue
    assert.deepEqual(pending.take(2).map((l) => l.text), ['a:2\n', 'b:1\n']);
    assert.equal(pending.takeTenant('b'), undefined);
    assert.equal(pending.takeTenant('c')?.text, 'c:1\n');
    assert.equal(pending.events, 0);
  });
});
