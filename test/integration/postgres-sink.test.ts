import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { createPool } from '../../src/db/pool.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';

const queued = (fields: Record<string, unknown> = {}, id: string = randomUUID()): QueuedEvent => queuedEvent(fields, id);

const signal = new AbortController().signal;

describe('PostgresCopySink', () => {
  let db: TestDatabase;
  let sink: PostgresCopySink;
  let pool: ReturnType<typeof createPool>;

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
    sink = new PostgresCopySink(pool, { copyTimeoutMs: 5_000 });
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  it('stores a batch in one transaction and reports what it inserted', async () => {
    const batch = Array.from({ length: 500 }, () => queued({ tenant: 'batch' }));
    assert.deepEqual(await sink.write(batch, { signal }), { inserted: 500, deadLettered: [] });
    assert.equal(await db.count("tenant = 'batch'"), 500);
  });

  it('skips ids already stored and ids repeated within a batch, without failing', async () => {
    const first = queued({ tenant: 'dup' });
    await sink.write([first], { signal });
    const again = queued({ tenant: 'dup' }, first.id);
    const fresh = queued({ tenant: 'dup' });
    const result = await sink.write([again, fresh, fresh], { signal });
    assert.deepEqual(result, { inserted: 1, deadLettered: [] });
    assert.equal(await db.count("tenant = 'dup'"), 2);
  });

  it('writes a batch without stored keys by plain COPY (no staging table), and only a batch holding one the staged way', async () => {
    const staging = async () => {
      const { rows } = await db.pool.query<{ n: string }>("SELECT count(*) AS n FROM pg_class WHERE relname = 'events_stage' AND relpersistence = 't'");
      return Number(rows[0]!.n);
    };
    const own = createPool(db.url, loadConfig({ DB_POOL_SIZE: '1' }).db, pino({ level: 'silent' }));
    const oneConnection = new PostgresCopySink(own, { copyTimeoutMs: 5_000 });
    try {
      const stagedBefore = await staging();
      const batch = Array.from({ length: 50 }, () => queued({ tenant: 'fast' }));
      assert.deepEqual(await oneConnection.write(batch, { signal }), { inserted: 50, deadLettered: [] });
      assert.equal(await staging(), stagedBefore, 'no staging table was needed');
      // Half of these are stored already: the plain COPY meets 23505, the batch goes the staged way.
      const mixed = [...batch.slice(0, 25).map((event) => queued({ tenant: 'fast' }, event.id)), ...Array.from({ length: 25 }, () => queued({ tenant: 'fast' }))];
      assert.deepEqual(await oneConnection.write(mixed, { signal }), { inserted: 25, deadLettered: [] });
      assert.equal(await staging(), stagedBefore + 1, 'the staging table of that connection');
      // The next clean batch is tried the staged way first (duplicates came last time), stores
      // everything, and switches back.
      assert.deepEqual(await oneConnection.write(Array.from({ length: 10 }, () => queued({ tenant: 'fast' })), { signal }), { inserted: 10, deadLettered: [] });
      assert.equal(await db.count("tenant = 'fast'"), 85);
    } finally {
      await own.end();
    }
  });

  it('round-trips every awkward character byte for byte', async () => {
    const awkward = 'tab\there, newline\nthere, cr\rback\\slash \\N \\. "quote" Zoë 👩‍💻 \u0001';
    const event = queued({
      tenant: 'chars',
      action: awkward,
      actor: { id: awkward, name: awkward },
      user_agent: awkward,
      source_ip: '2001:db8::1',
      metadata: { text: awkward, nested: { list: [awkward, 1, true, null] } },
    });
    await sink.write([event], { signal });
    const { rows } = await pool.query(
      'SELECT action, actor_id, actor_name, user_agent, host(source_ip) AS ip, metadata FROM events WHERE id = $1',
      [event.id],
    );
    assert.deepEqual(rows[0], {
      action: awkward,
      actor_id: awkward,
      actor_name: awkward,
      user_agent: awkward,
      ip: '2001:db8::1',
      metadata: { text: awkward, nested: { list: [awkward, 1, true, null] } },
    });
  });

  it('fails the whole batch on a bad row, stores none of it, and leaves the pool usable', async () => {
    const good = queued({ tenant: 'atomic' });
    const bad: QueuedEvent = { ...good, id: randomUUID(), row: good.row.replace(/^[^\t]+/, 'not-a-uuid') };
    await sink.write([queued({ tenant: 'warm-up' })], { signal });
    const connectionsBeforeRefusal = pool.totalCount;
    await assert.rejects(sink.write([queued({ tenant: 'atomic' }), bad], { signal }), (error: { code?: string }) => {
      assert.equal(error.code, '22P02'); // invalid_text_representation
      return true;
    });
    assert.equal(await db.count("tenant = 'atomic'"), 0);
    assert.equal(pool.totalCount, connectionsBeforeRefusal, 'the connection was rolled back and kept, not destroyed');
    assert.deepEqual(await sink.write([good], { signal }), { inserted: 1, deadLettered: [] });
  });

  it('abandons a write stuck behind a lock at its timeout or on abort, and discards the connection', async () => {
    const locker = await db.pool.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    // A pool of their own, so what is left in it after the abandoned writes is theirs alone.
    const abandonPool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
    const quick = new PostgresCopySink(abandonPool, { copyTimeoutMs: 300 });
    const aborted = new PostgresCopySink(abandonPool, { copyTimeoutMs: 5_000 });
    try {
      await assert.rejects(quick.write([queued({ tenant: 'slow' })], { signal }), (error: { code?: string }) => {
        assert.equal(error.code, 'SINK_ERR_COPY_TIMEOUT');
        return true;
      });
      const abort = new AbortController();
      const write = aborted.write([queued({ tenant: 'slow' })], { signal: abort.signal });
      abort.abort(new Error('shutdown deadline'));
      await assert.rejects(write, /shutdown deadline|Connection terminated/);
      assert.equal(abandonPool.totalCount, 0, 'both abandoned connections were destroyed, not returned to the pool');
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
      await abandonPool.end();
    }
    assert.equal(await db.count("tenant = 'slow'"), 0);
    assert.deepEqual(await sink.write([queued({ tenant: 'after-timeout' })], { signal }), { inserted: 1, deadLettered: [] });
  });
});
