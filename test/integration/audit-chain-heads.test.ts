import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { HeadAnomaly } from '../../src/audit/chain-writer.ts';
import { reportHeadAnomalies } from '../../src/audit/head-anomalies.ts';
import { verifyChain, type TrustedCheckpoint } from '../../src/audit/verify.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { PoisonSplittingSink } from '../../src/sink/poison-splitting-sink.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { RetryingSink } from '../../src/sink/retrying-sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';

const signal = new AbortController().signal;
const events = (tenant: string, n: number): QueuedEvent[] =>
  Array.from({ length: n }, (_, i) => queuedEvent({ tenant, occurred_at: `2026-11-22T04:${String(i % 60).padStart(2, '0')}:00.5+00:00` }, randomUUID()));

/**
 * A tenant's head row edited or deleted behind the service while its links remain
 * (audit_chain_heads is a side table: the links are the record). Through the sink chain's own
 * decorators (retry inside poison isolation, as sink-chain.ts builds it), so a refusal the chain
 * takes for bad data shows up as dead letters.
 */
describe('audit chain heads deleted or edited behind the service (AUDIT_CHAIN=on)', () => {
  let db: TestDatabase;
  let pool: ReturnType<typeof createPool>;

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  /**
   * A fresh sink (a restarted service: no tenant known) inside retry and poison isolation, its head
   * anomalies reported as the runtime reports them (an error log each, the recovered ones counted).
   */
  function chain() {
    const deadLettered: QueuedEvent[] = [];
    const anomalies: HeadAnomaly[] = [];
    const logs: { msg: string; tenant: string; found: string; level: number }[] = [];
    const recovered: string[] = [];
    const logger = pino({ level: 'error' }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) });
    const report = reportHeadAnomalies(logger, { inc: ({ found }) => void recovered.push(found) });
    const heads: TrustedCheckpoint[] = [];
    const copy = new PostgresCopySink(pool, {
      copyTimeoutMs: 10_000,
      rollups: true,
      auditChain: {
        onCommitted: (committed) => heads.push(...committed.map((h) => ({ tenant: h.tenant, seq: h.seq, hash: h.hash, time: 'test' }))),
        onHeadAnomalies: (found) => {
          anomalies.push(...found);
          report(found);
        },
      },
    });
    const retrying = new RetryingSink(copy, { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 2 });
    const sink = new PoisonSplittingSink(retrying, { deadLetter: { write: (batch) => Promise.resolve(void deadLettered.push(...batch)) } });
    return { sink, deadLettered, anomalies, logs, recovered, heads };
  }

  const recoveries = async (tenant: string) =>
    (await db.pool.query<{ found: string; found_seq: string | null; last_seq: string }>('SELECT found, found_seq::text, last_seq::text FROM audit_chain_head_recoveries WHERE tenant = $1 ORDER BY id', [tenant])).rows;

  const storedOnce = async (tenant: string, batch: readonly QueuedEvent[]) => {
    const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE tenant = $1 AND id = ANY($2::uuid[]) GROUP BY id', [tenant, batch.map((e) => e.id)]);
    assert.equal(rows.length, batch.length, 'every event of the batch is stored');
    assert.ok(rows.every((row) => row.n === 1), 'none twice');
  };

  it('head row deleted, links kept, service restarted: the next batch is stored, not dead-lettered', async () => {
    const tenant = 'head-deleted';
    const first = chain();
    await first.sink.write(events(tenant, 5), { signal });
    await first.sink.write(events(tenant, 5), { signal });
    await db.pool.query('DELETE FROM audit_chain_heads WHERE tenant = $1', [tenant]);

    const restarted = chain();
    const batch = events(tenant, 7);
    const result = await restarted.sink.write(batch, { signal });
    assert.deepEqual(restarted.deadLettered.map((e) => e.id), [], 'nothing dead-lettered');
    assert.equal(result.deadLettered.length, 0);
    await storedOnce(tenant, batch);
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.links, 3);
    assert.equal(report.events, 17);
    assert.deepEqual(await recoveries(tenant), [{ found: 'missing', found_seq: null, last_seq: '2' }], 'the recovery is recorded');
    assert.deepEqual(
      report.headRecoveries.map((r) => [r.found, r.foundSeq, r.lastSeq]),
      [['missing', undefined, 2n]],
      'the verifier lists it beside its verdict',
    );
    assert.deepEqual(restarted.recovered, ['missing'], 'counted once');
    assert.equal(restarted.logs.length, 1);
    assert.equal(restarted.logs[0]!.level, 50, 'an error log');
    assert.equal(restarted.logs[0]!.tenant, tenant);
    assert.match(restarted.logs[0]!.msg, /head of tenant head-deleted was missing while its links go up to seq 2.*Recreated it at link 2.*npm run audit -- verify --tenant head-deleted/);
  });

  it('head row deleted under a running sink (the tenant known): the count mismatch is retried and the retry recovers the head', async () => {
    const tenant = 'head-deleted-known';
    const running = chain();
    await running.sink.write(events(tenant, 3), { signal });
    await db.pool.query('DELETE FROM audit_chain_heads WHERE tenant = $1', [tenant]);
    const batch = [...events(tenant, 4), ...events('bystander', 2)];
    await running.sink.write(batch, { signal });
    assert.deepEqual(running.deadLettered, []);
    await storedOnce(tenant, batch.slice(0, 4));
    assert.deepEqual(await recoveries(tenant), [{ found: 'missing', found_seq: null, last_seq: '1' }]);
    assert.deepEqual(running.anomalies.map((a) => [a.tenant, a.found, a.recovered]), [[tenant, 'missing', true]], 'the bystander tenant is not an anomaly');
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.events, 7);
    // The next write takes the fast way again (the head is known) and goes on from the recovered head.
    await running.sink.write(events(tenant, 2), { signal });
    assert.equal((await verifyChain(db.pool, { tenant })).links, 3);
    assert.equal((await recoveries(tenant)).length, 1, 'recovered once');
  });

  it('head moved back behind its last link: retried instead of taken for bad data, then moved to the last link and recorded', async () => {
    const tenant = 'head-behind';
    const running = chain();
    for (let i = 0; i < 3; i += 1) await running.sink.write(events(tenant, 3), { signal });
    // Rewound to link 1, consistently (its seq and hash): the next link's seq, 2, exists.
    await db.pool.query(`UPDATE audit_chain_heads h SET seq = 1, hash = l.hash FROM audit_chain_links l WHERE h.tenant = $1 AND l.tenant = $1 AND l.seq = 1`, [tenant]);
    const batch = events(tenant, 5);
    await running.sink.write(batch, { signal });
    assert.deepEqual(running.deadLettered, [], 'known tenant: the collision is retried, not dead-lettered');
    await storedOnce(tenant, batch);
    assert.deepEqual(await recoveries(tenant), [{ found: 'behind', found_seq: '1', last_seq: '3' }]);
    assert.deepEqual(running.recovered, ['behind']);
    assert.match(running.logs[0]!.msg, /was at seq 1, behind its last link 3/);
    // The same through a restarted sink (the head locked and checked first).
    await db.pool.query(`UPDATE audit_chain_heads SET seq = 0, hash = decode(repeat('00', 32), 'hex') WHERE tenant = $1`, [tenant]);
    const restarted = chain();
    await restarted.sink.write(events(tenant, 2), { signal });
    assert.deepEqual(restarted.deadLettered, []);
    assert.deepEqual((await recoveries(tenant)).map((r) => [r.found, r.found_seq, r.last_seq]), [['behind', '1', '3'], ['behind', '0', '4']]);
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.links, 5);
    assert.equal(report.events, 16);
  });

  it('head ahead of its last link (the last links deleted with their events): not rewound, the batch goes after the head and verify reports the gap', async () => {
    const tenant = 'head-ahead';
    const first = chain();
    for (let i = 0; i < 3; i += 1) await first.sink.write(events(tenant, 3), { signal });
    await db.pool.query(`DELETE FROM events e USING audit_chain_links l WHERE l.tenant = $1 AND l.seq = 3 AND e.tenant = $1 AND e.id = ANY(l.ids)`, [tenant]);
    await db.pool.query('DELETE FROM audit_chain_links WHERE tenant = $1 AND seq = 3', [tenant]);
    const restarted = chain();
    const batch = events(tenant, 4);
    await restarted.sink.write(batch, { signal });
    assert.deepEqual(restarted.deadLettered, []);
    await storedOnce(tenant, batch);
    assert.deepEqual(restarted.anomalies.map((a) => [a.found, a.recovered, a.headSeq, a.lastSeq]), [['ahead', false, 3n, 2n]]);
    assert.deepEqual(restarted.recovered, [], 'not counted as recovered');
    assert.match(restarted.logs[0]!.msg, /is at seq 3, past its last link 2: link 3 was deleted.*Not repaired/);
    assert.deepEqual(await recoveries(tenant), []);
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.finding?.kind, 'link-missing');
    assert.equal(report.finding?.seq, 3n);
  });

  it("head's hash edited at the last link's seq: not repaired, the next link follows it and verify reports the break", async () => {
    const tenant = 'head-forked';
    const first = chain();
    await first.sink.write(events(tenant, 3), { signal });
    await db.pool.query(`UPDATE audit_chain_heads SET hash = sha256('forged') WHERE tenant = $1`, [tenant]);
    const restarted = chain();
    await restarted.sink.write(events(tenant, 3), { signal });
    assert.deepEqual(restarted.deadLettered, []);
    assert.deepEqual(restarted.anomalies.map((a) => [a.found, a.recovered]), [['forked', false]]);
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.finding?.kind, 'link-broken');
    assert.equal(report.finding?.seq, 2n);
  });

  it('head deleted together with the last link and its events: recovered from what is left, and the signed checkpoint shows the cut', async () => {
    const tenant = 'head-and-tail';
    const first = chain();
    for (let i = 0; i < 3; i += 1) await first.sink.write(events(tenant, 3), { signal });
    const signed = first.heads.filter((h) => h.tenant === tenant);
    await db.pool.query(`DELETE FROM events e USING audit_chain_links l WHERE l.tenant = $1 AND l.seq = 3 AND e.tenant = $1 AND e.id = ANY(l.ids)`, [tenant]);
    await db.pool.query('DELETE FROM audit_chain_links WHERE tenant = $1 AND seq = 3', [tenant]);
    await db.pool.query('DELETE FROM audit_chain_heads WHERE tenant = $1', [tenant]);
    const restarted = chain();
    await restarted.sink.write(events(tenant, 2), { signal });
    assert.deepEqual(restarted.deadLettered, []);
    assert.deepEqual(await recoveries(tenant), [{ found: 'missing', found_seq: null, last_seq: '2' }]);
    assert.equal((await verifyChain(db.pool, { tenant })).ok, true, 'without checkpoints, a consistent cut is invisible (as with a rewound head)');
    const report = await verifyChain(db.pool, { tenant, checkpoints: signed });
    assert.equal(report.finding?.kind, 'checkpoint-mismatch', report.finding?.message);
    assert.equal(report.finding?.seq, 3n, 'link 3 is not the one signed');
  });

  it('two restarted writers find the same deleted head at once: one recovers it, the other appends after it', async () => {
    const tenant = 'head-deleted-twice';
    const first = chain();
    await first.sink.write(events(tenant, 3), { signal });
    await db.pool.query('DELETE FROM audit_chain_heads WHERE tenant = $1', [tenant]);
    const [a, b] = [chain(), chain()];
    await Promise.all([a.sink.write(events(tenant, 4), { signal }), b.sink.write(events(tenant, 5), { signal })]);
    assert.deepEqual([...a.deadLettered, ...b.deadLettered], []);
    assert.deepEqual(await recoveries(tenant), [{ found: 'missing', found_seq: null, last_seq: '1' }], 'one recovery');
    assert.deepEqual([...a.recovered, ...b.recovered], ['missing']);
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.links, 3);
    assert.equal(report.events, 12);
  });
});
