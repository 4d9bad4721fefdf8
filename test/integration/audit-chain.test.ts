import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { verifyChain } from '../../src/audit/verify.ts';
import type { ChainHead } from '../../src/audit/chain-writer.ts';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { PoisonSplittingSink } from '../../src/sink/poison-splitting-sink.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { RetryingSink } from '../../src/sink/retrying-sink.ts';
import type { Sink } from '../../src/sink/sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';

const signal = new AbortController().signal;
const events = (tenant: string, n: number, fields: Record<string, unknown> = {}): QueuedEvent[] =>
  Array.from({ length: n }, (_, i) => queuedEvent({ tenant, occurred_at: `2026-11-22T04:${String(i % 60).padStart(2, '0')}:00.123456789+02:00`, ...fields }, randomUUID()));

describe('audit chain (AUDIT_CHAIN=on) written by the COPY sink, checked by the verifier', () => {
  let db: TestDatabase;
  let pool: ReturnType<typeof createPool>;
  let sink: PostgresCopySink;
  const committed: ChainHead[] = [];

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
    sink = new PostgresCopySink(pool, { copyTimeoutMs: 10_000, rollups: true, auditChain: { onCommitted: (heads) => committed.push(...heads) } });
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  /** Three tenants' worth of batches: plain COPY, duplicates (the staged way), two writes at once. */
  async function writeTrail(tenant: string): Promise<QueuedEvent[]> {
    const first = events(tenant, 40);
    await sink.write(first, { signal });
    // Duplicates of stored keys and a key repeated in the batch: they take no place in the chain.
    const fresh = events(tenant, 10);
    await sink.write([...first.slice(0, 5), ...fresh, fresh[0]!], { signal });
    // Two writes at once, each with two tenants (the heads are locked in one order: no deadlock).
    const [a, b] = [events(tenant, 30), events(tenant, 30)];
    const other = `${tenant}-other`;
    await Promise.all([sink.write([...a, ...events(other, 5)], { signal }), sink.write([...events(other, 5), ...b], { signal })]);
    await sink.write(events(tenant, 20), { signal });
    return [...first, ...fresh, ...a, ...b];
  }

  const keysOf = async (tenant: string, seq: number) =>
    (await db.pool.query<{ id: string; occurred_at: string }>(`SELECT unnest(ids)::text AS id, unnest(occurred_ats)::text AS occurred_at FROM audit_chain_links WHERE tenant = $1 AND seq = $2`, [tenant, seq])).rows;

  it('verifies an intact chain: duplicates skipped, concurrent writers, several tenants', async () => {
    await writeTrail('intact');
    const report = await verifyChain(db.pool, { tenant: 'intact' });
    assert.equal(report.finding, undefined, report.finding?.message);
    assert.equal(report.ok, true);
    assert.equal(report.events, await db.count("tenant = 'intact'"));
    assert.equal(report.events, 130, 'each stored event once, no duplicate');
    assert.equal(report.links, 5);
    assert.deepEqual(await verifyChain(db.pool, { tenant: 'intact', pageSize: 2 }), report, 'the same, read two links at a time');
    const other = await verifyChain(db.pool, { tenant: 'intact-other' });
    assert.equal(other.ok, true, other.finding?.message);
    assert.equal(other.events, 10);
    const heads = committed.filter((head) => head.tenant === 'intact').map((head) => Number(head.seq));
    assert.deepEqual([...heads].sort(), [1, 2, 3, 4, 5], 'every committed link was reported once');
  });

  it('heads already known are locked by the append statement itself: writes at once in either tenant order chain every event once', async () => {
    const [x, y] = ['locking-x', 'locking-y'];
    // The first write creates both heads (LOCK_HEADS); every later one locks them in the append.
    await sink.write([...events(x, 3), ...events(y, 3)], { signal });
    const writes = Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? [...events(x, 7), ...events(y, 5)] : [...events(y, 5), ...events(x, 7)]));
    await Promise.all(writes.map((batch) => sink.write(batch, { signal })));
    for (const [tenant, expected] of [[x, 3 + 6 * 7], [y, 3 + 6 * 5]] as const) {
      const report = await verifyChain(db.pool, { tenant });
      assert.equal(report.ok, true, report.finding?.message);
      assert.equal(report.events, expected);
      assert.equal(report.links, 7, 'one link per committed write');
    }
  });

  it('the staged way chains what its INSERT stored: a key repeated in one batch with other values is hashed as the version kept', async () => {
    const tenant = 'repeated-key';
    const id = randomUUID();
    const at = { tenant, occurred_at: '2026-11-22T04:00:00.5+00:00' };
    const [first, second] = [queuedEvent({ ...at, actor: { id: 'alice' } }, id), queuedEvent({ ...at, actor: { id: 'mallory' } }, id)];
    await sink.write([first, ...events(tenant, 3), second], { signal });
    const { rows } = await db.pool.query<{ actor_id: string }>('SELECT actor_id FROM events WHERE tenant = $1 AND id = $2', [tenant, id]);
    assert.deepEqual(rows, [{ actor_id: 'alice' }], 'the first of the two was kept');
    const report = await verifyChain(db.pool, { tenant });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.events, 4);
  });

  it('a head deleted behind the sink (with its links): the write is refused retryably, nothing stored, and the retry starts the chain again', async () => {
    const tenant = 'head-gone';
    await sink.write(events(tenant, 4), { signal });
    await db.pool.query('DELETE FROM audit_chain_links WHERE tenant = $1', [tenant]);
    await db.pool.query('DELETE FROM audit_chain_heads WHERE tenant = $1', [tenant]);
    const batch = events(tenant, 6);
    await assert.rejects(sink.write(batch, { signal }), (error: Error & { code?: string }) => error.code === 'AUDIT_ERR_CHAIN_MISMATCH');
    assert.equal(await db.count(`tenant = '${tenant}'`), 4, 'the refused batch rolled back whole');
    await sink.write(batch, { signal });
    assert.equal(await db.count(`tenant = '${tenant}'`), 10);
    const { rows } = await db.pool.query<{ seq: string; event_count: number }>('SELECT seq::text, event_count FROM audit_chain_links WHERE tenant = $1', [tenant]);
    assert.deepEqual(rows, [{ seq: '1', event_count: 6 }], 'a new chain from genesis holding the retried batch');
  });

  it('detects an UPDATE of a stored event, naming its link and key', async () => {
    await writeTrail('updated');
    const [victim] = await keysOf('updated', 3);
    await db.pool.query(`UPDATE events SET actor_id = 'mallory' WHERE tenant = 'updated' AND id = $1`, [victim!.id]);
    const report = await verifyChain(db.pool, { tenant: 'updated', pageSize: 2 });
    assert.equal(report.ok, false);
    assert.equal(report.finding?.kind, 'row-altered');
    assert.equal(report.finding?.seq, 3n);
    assert.equal(report.finding?.key?.id, victim!.id);
  });

  it('detects a change invisible in text: metadata rewritten to an equal-looking jsonb', async () => {
    await writeTrail('meta');
    const [victim] = await keysOf('meta', 1);
    await db.pool.query(`UPDATE events SET metadata = jsonb_set(coalesce(metadata, '{}'), '{n}', '1.0') WHERE tenant = 'meta' AND id = $1`, [victim!.id]);
    assert.equal((await verifyChain(db.pool, { tenant: 'meta' })).finding?.kind, 'row-altered');
  });

  it('detects a DELETE of a row in the middle', async () => {
    await writeTrail('deleted');
    const keys = await keysOf('deleted', 2);
    await db.pool.query(`DELETE FROM events WHERE tenant = 'deleted' AND id = $1`, [keys[4]!.id]);
    const report = await verifyChain(db.pool, { tenant: 'deleted' });
    assert.equal(report.finding?.kind, 'row-missing');
    assert.equal(report.finding?.seq, 2n);
    assert.equal(report.finding?.key?.id, keys[4]!.id);
  });

  it('detects the last rows deleted with their link when the head is left, and names the missing link', async () => {
    await writeTrail('tail');
    const keys = await keysOf('tail', 5);
    await db.pool.query(`DELETE FROM events WHERE tenant = 'tail' AND id = ANY($1::uuid[])`, [keys.map((k) => k.id)]);
    await db.pool.query(`DELETE FROM audit_chain_links WHERE tenant = 'tail' AND seq = 5`);
    const report = await verifyChain(db.pool, { tenant: 'tail' });
    assert.equal(report.finding?.kind, 'head-mismatch');
    // Rewinding the head too leaves a consistent, shorter chain: only a signed checkpoint tells (checkpoints test).
    const { rows } = await db.pool.query<{ hash: Buffer }>(`SELECT hash FROM audit_chain_links WHERE tenant = 'tail' AND seq = 4`);
    await db.pool.query(`UPDATE audit_chain_heads SET seq = 4, hash = $1 WHERE tenant = 'tail'`, [rows[0]!.hash]);
    assert.equal((await verifyChain(db.pool, { tenant: 'tail' })).ok, true, 'without a checkpoint, a cut tail is invisible');
  });

  it('detects reordering: two links swapping places', async () => {
    await writeTrail('swapped');
    for (const [from, to] of [[2, 1000], [3, 2], [1000, 3]]) await db.pool.query(`UPDATE audit_chain_links SET seq = $2 WHERE tenant = 'swapped' AND seq = $1`, [from, to]);
    const report = await verifyChain(db.pool, { tenant: 'swapped' });
    assert.equal(report.finding?.kind, 'link-broken');
    assert.equal(report.finding?.seq, 2n);
  });

  it('detects events moved between links (their keys and leaves swapped)', async () => {
    await writeTrail('moved');
    await db.pool.query(
      `UPDATE audit_chain_links l SET ids = o.ids, occurred_ats = o.occurred_ats, leaves = o.leaves
         FROM audit_chain_links o WHERE l.tenant = 'moved' AND o.tenant = 'moved' AND l.seq + o.seq = 7 AND l.seq IN (3, 4)`,
    );
    assert.equal((await verifyChain(db.pool, { tenant: 'moved' })).finding?.kind, 'link-altered');
  });

  it('detects a deleted link in the middle', async () => {
    await writeTrail('gap');
    await db.pool.query(`DELETE FROM audit_chain_links WHERE tenant = 'gap' AND seq = 2`);
    const report = await verifyChain(db.pool, { tenant: 'gap' });
    assert.equal(report.finding?.kind, 'link-missing');
    assert.equal(report.finding?.seq, 2n);
  });

  it('detects a row inserted behind the service', async () => {
    await writeTrail('inserted');
    const forged = randomUUID();
    await db.pool.query(
      `INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id, outcome) VALUES ($1, 'inserted', '2026-11-22T01:00:00Z', now(), 'user.login', 'ghost', 'success')`,
      [forged],
    );
    const report = await verifyChain(db.pool, { tenant: 'inserted' });
    assert.equal(report.finding?.kind, 'row-unchained');
    assert.equal(report.finding?.key?.id, forged);
    assert.equal((await verifyChain(db.pool, { tenant: 'inserted', checkUnchained: false })).ok, true);
  });

  it('--since: rows older than it are not looked up (retention dropped them), the links are still walked', async () => {
    const tenant = 'retained';
    await sink.write(events(tenant, 5, { occurred_at: '2026-10-01T00:00:00Z' }), { signal });
    await sink.write(events(tenant, 5, { occurred_at: '2026-11-22T00:00:00Z' }), { signal });
    await db.pool.query(`DELETE FROM events WHERE tenant = $1 AND occurred_at < '2026-11-01'`, [tenant]);
    assert.equal((await verifyChain(db.pool, { tenant })).finding?.kind, 'row-missing');
    const report = await verifyChain(db.pool, { tenant, since: new Date('2026-11-01T00:00:00Z') });
    assert.equal(report.ok, true, report.finding?.message);
    assert.equal(report.links, 2);
  });

  it('keeps the chain intact through poison splits and retries', async () => {
    const tenant = 'poison';
    await db.pool.query(`ALTER TABLE events ADD CONSTRAINT chain_poison CHECK (action <> 'chain.poison')`);
    try {
      const deadLettered: QueuedEvent[] = [];
      let calls = 0;
      // The first write commits but its answer is lost (ECONNRESET after COMMIT); the second fails
      // before writing: the retries re-send batches already stored, whose keys take no second place.
      const flaky: Sink = {
        write: async (batch, options) => {
          calls += 1;
          if (calls === 1) await sink.write(batch.slice(0, 8), options);
          if (calls <= 2) throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
          return sink.write(batch, options);
        },
      };
      const retrying = new RetryingSink(flaky, { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 2 });
      const splitting = new PoisonSplittingSink(retrying, {
        deadLetter: { write: (batch) => Promise.resolve(void deadLettered.push(...batch)) },
      });
      const batch = events(tenant, 64);
      batch[10] = queuedEvent({ tenant, action: 'chain.poison' });
      batch[50] = queuedEvent({ tenant, action: 'chain.poison' });
      const result = await splitting.write(batch, { signal });
      assert.equal(result.deadLettered.length, 2);
      assert.equal(deadLettered.length, 2);
      assert.equal(await db.count(`tenant = '${tenant}'`), 62);
      const report = await verifyChain(db.pool, { tenant });
      assert.equal(report.ok, true, report.finding?.message);
      assert.equal(report.events, 62);
      assert.ok(report.links > 1, 'each stored half is a link of its own');
    } finally {
      await db.pool.query(`ALTER TABLE events DROP CONSTRAINT chain_poison`);
    }
  });
});
