import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runChaos } from '../../chaos/chaos.ts';
import { resultTable } from '../../chaos/lib/report.ts';
import { serverUrl } from '../helpers/database.ts';

/**
 * `npm run chaos` in seconds: the scenarios that need no database server of their own (the test
 * run's is shared) with short faults, under a paced load, each with the obligation ledger. The
 * full run (30 s partition, database kills and restarts, ≥ 10 rounds each, disk full) is
 * `npm run chaos`; the figures are in the README.
 */
describe('chaos, short', () => {
  it('every acknowledged event is stored exactly once through a partition, resets and service kills; recovery within 5 s of each heal', async (t) => {
    const lines: string[] = [];
    const results = await runChaos({
      eventsPerSecond: 200,
      bulk: 10,
      connections: 4,
      short: true,
      log: (line) => lines.push(line),
      only: ['partition', 'reset', 'sigterm', 'sigkill'],
      databaseUrl: serverUrl(),
    });
    for (const line of resultTable(results).split('\n')) t.diagnostic(line);
    assert.equal(results.length, 4);
    for (const result of results) {
      assert.deepEqual(result.problems, [], `${result.scenario}:\n${lines.join('\n')}`);
      assert.ok(result.acknowledged > 0, `${result.scenario}: load was acknowledged`);
      assert.equal(result.lost, 0);
      assert.equal(result.duplicated, 0);
      assert.equal(result.unknown, 0);
      assert.equal(result.unexpected5xx, 0);
      assert.ok(result.recoveryMs.length > 0, `${result.scenario}: recovery was measured`);
    }
  });
});
