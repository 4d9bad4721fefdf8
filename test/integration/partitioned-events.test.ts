import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { runner } from 'node-pg-migrate';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { migrate, MIGRATIONS_DIR } from '../../src/db/migrate.ts';
import { PartitionMaintenance, type PartitionMaintenanceOptions } from '../../src/db/partition-maintenance.ts';
import { createPool } from '../../src/db/pool.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';
import { buildTestService, sampleEvent } from '../helpers/service.ts';

const DAY_MS = 86_400_000;
const signal = new AbortController().signal;
const silent = pino({ level: 'silent' });
const START = Date.UTC(2026, 10, 22, 13, 0); // 2026-11-22 13:00 UTC
const iso = (ms: number) => new Date(ms).toISOString();

async function partitionsOf(db: TestDatabase): Promise<string[]> {
  const { rows } = await db.pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}

async function rowsIn(db: TestDatabase, table: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(rows[0]!.n);
}

describe('partitioned events: the key, partition maintenance and retention', () => {
  let db: TestDatabase;
  let pool: ReturnType<typeof createPool>;
  let sink: PostgresCopySink;

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, silent);
    sink = new PostgresCopySink(pool, { copyTimeoutMs: 5_000 });
  });
  after(async () => {
    await pool.end();
    await db.drop();
  });

  const maintenance = (clock: ReturnType<typeof createFakeClock>, options: Partial<PartitionMaintenanceOptions> = {}) =>
    new PartitionMaintenance(pool, { daysAhead: 2, retentionDays: undefined, intervalMs: 3_600_000, lockTimeoutMs: 2_000, ...options }, clock, silent);

  it('is partitioned by occurred_at, keyed (tenant, id, occurred_at), with a DEFAULT partition', async () => {
    const { rows } = await db.pool.query<{ key: string; by: string }>(
      `SELECT pg_get_constraintdef(c.oid) AS key, pg_get_partkeydef('events'::regclass) AS by
         FROM pg_constraint c WHERE c.conrelid = 'events'::regclass AND c.contype = 'p'`,
    );
    assert.deepEqual(rows, [{ key: 'PRIMARY KEY (tenant, id, occurred_at)', by: 'RANGE (occurred_at)' }]);
    assert.deepEqual(await partitionsOf(db), ['events_default']);
  });

  it('creates today and the days ahead once, however often it runs, and two instances at once', async () => {
    const clock = createFakeClock(START);
    const [a, b] = await Promise.all([maintenance(clock).runOnce(), maintenance(clock).runOnce()]);
    assert.deepEqual([...a.created, ...b.created].sort(), ['events_p20261122', 'events_p20261123', 'events_p20261124']);
    assert.deepEqual((await maintenance(clock).runOnce()).created, []);
    assert.deepEqual(await partitionsOf(db), ['events_default', 'events_p20261122', 'events_p20261123', 'events_p20261124']);
  });

  it('stores a retried event once, by plain COPY and by the staged way, in its day’s partition', async () => {
    const event = queuedEvent({ tenant: 'retry', occurred_at: '2026-11-23T10:00:00.000Z' });
    assert.equal((await sink.write([event], { signal })).inserted, 1);
    // The same event again, with its occurred_at written another way (same instant): still one row.
    const again = queuedEvent({ tenant: 'retry', occurred_at: '2026-11-23T12:00:00+02:00' }, event.id);
    assert.equal((await sink.write([again], { signal })).inserted, 0);
    assert.equal((await sink.write([again, event, queuedEvent({ tenant: 'retry' })], { signal })).inserted, 1);
    const { rows } = await db.pool.query<{ partition: string }>(`SELECT tableoid::regclass::text AS partition FROM events WHERE id = $1`, [event.id]);
    assert.deepEqual(rows, [{ partition: 'events_p20261123' }]);
  });

  it('moves the default partition’s rows of a day into that day’s partition when it is created', async () => {
    const clock = createFakeClock(START);
    const later = Date.UTC(2026, 11, 10, 8); // beyond the days ahead: lands in the default partition
    const events = Array.from({ length: 20 }, (_, i) => queuedEvent({ tenant: 'future', occurred_at: iso(later + i * 1000) }));
    assert.equal((await sink.write(events, { signal })).inserted, 20);
    assert.equal(await rowsIn(db, 'events_default'), 20);
    await clock.tickAsync(later - START); // that day is now today: its partition is created, with the rows moved
    const report = await maintenance(clock).runOnce();
    assert.ok(report.created.includes('events_p20261210'), report.created.join());
    assert.equal(report.movedFromDefault, 20);
    assert.equal(await rowsIn(db, 'events_default'), 0);
    assert.equal(await rowsIn(db, 'events_p20261210'), 20);
    // A retry of a moved event is still a duplicate.
    assert.equal((await sink.write([events[0]!], { signal })).inserted, 0);
    assert.equal(await db.count("tenant = 'future'"), 20);
  });

  it('split-default gives every day the default partition holds a partition of its own', async () => {
    const clock = createFakeClock(START);
    const late = [Date.UTC(2026, 9, 1, 5), Date.UTC(2026, 9, 1, 23), Date.UTC(2026, 9, 3, 0)];
    await sink.write(late.map((ms) => queuedEvent({ tenant: 'late', occurred_at: iso(ms) })), { signal });
    const report = await maintenance(clock).splitDefault();
    assert.deepEqual(report.created, ['events_p20261001', 'events_p20261003']);
    assert.equal(report.movedFromDefault, 3);
    assert.equal(await rowsIn(db, 'events_default'), 0);
  });

  it('RETENTION_DAYS drops whole partitions older than it, and nothing else', async () => {
    const clock = createFakeClock(Date.UTC(2026, 11, 12, 1));
    const before = await db.count();
    const oldRows = (await rowsIn(db, 'events_p20261001')) + (await rowsIn(db, 'events_p20261003'));
    // Kept: every partition whose day ends after 2026-12-12 − 60 days = 2026-10-13.
    const report = await maintenance(clock, { retentionDays: 60 }).runOnce();
    assert.deepEqual([...report.dropped].sort(), ['events_p20261001', 'events_p20261003']);
    assert.equal(await db.count(), before - oldRows);
    const names = await partitionsOf(db);
    assert.ok(names.includes('events_default') && names.includes('events_p20261122'), names.join());
    assert.deepEqual((await maintenance(clock, { retentionDays: 60 }).runOnce()).dropped, []);
  });

  it('drops with DETACH … CONCURRENTLY when there is no DEFAULT partition', async () => {
    await db.pool.query('ALTER TABLE events DETACH PARTITION events_default');
    try {
      const clock = createFakeClock(Date.UTC(2026, 11, 25, 1));
      const report = await maintenance(clock, { retentionDays: 2 }).runOnce();
      assert.ok(report.dropped.includes('events_p20261122') && report.dropped.includes('events_p20261210'), report.dropped.join());
      assert.equal(await db.count("tenant = 'future'"), 0);
    } finally {
      await db.pool.query(`ALTER TABLE events ATTACH PARTITION events_default DEFAULT`);
    }
  });

  it('start() repeats the maintenance on the injected clock, and stop() ends it', async () => {
    const clock = createFakeClock(Date.UTC(2027, 0, 1, 12));
    const job = maintenance(clock, { daysAhead: 0, intervalMs: 60_000 });
    job.start();
    await clock.tickAsync(60_000);
    await job.stop();
    assert.ok((await partitionsOf(db)).includes('events_p20270101'));
    await clock.tickAsync(DAY_MS);
    assert.ok(!(await partitionsOf(db)).includes('events_p20270102'), 'no run after stop()');
  });
});

/** The partitioning migration; the ones before it leave `events` unpartitioned. */
const PARTITION_MIGRATION = '0004_events_partitioned';
const migrationsBefore = async () => (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.sql')).sort().indexOf(`${PARTITION_MIGRATION}.sql`);

describe(`migration ${PARTITION_MIGRATION} on a populated, unpartitioned table`, () => {
  const options = (url: string) => ({ databaseUrl: url, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'ingest_migrations', log: () => {} }) as const;
  const seed = `INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id)
    SELECT gen_random_uuid(), 't' || (n % 7), date_trunc('second', now()) + ((n % 50) - 40) * interval '1 day', now(), 'seed', 'actor'
      FROM generate_series(1, 5000) AS n`;

  it('keeps every row, keeps ids deduplicated, and is applied once when two replicas start together', async () => {
    const db = await createTestDatabase({ migrate: false });
    const pool = createPool(db.url, loadConfig({}).db, silent);
    try {
      await runner({ ...options(db.url), count: await migrationsBefore() });
      await db.pool.query(seed);
      const { rows: sample } = await db.pool.query<{ id: string; tenant: string; occurred_at: Date }>(
        `(SELECT id, tenant, occurred_at FROM events WHERE occurred_at < now() - interval '1 day' LIMIT 3)
         UNION ALL (SELECT id, tenant, occurred_at FROM events WHERE occurred_at > now() + interval '1 day' LIMIT 3)`,
      );
      const applied: string[][] = [];
      const logger = { info: (fields: { migrations?: string[] }) => applied.push(fields.migrations ?? []) };
      await Promise.all([migrate(db.url, logger as never), migrate(db.url, logger as never)]);
      assert.equal(applied.length, 1, 'one replica applied it');
      assert.equal(applied[0]![0], PARTITION_MIGRATION, 'the partitioning migration is the first one applied (later ones follow it)');
      assert.equal(await db.count(), 5000);
      const parts = await db.pool.query<{ partition: string; n: string }>(`SELECT tableoid::regclass::text AS partition, count(*) AS n FROM events GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(parts.rows.map((r) => r.partition), ['events_default', 'events_legacy'], 'old rows stay in place; today and later go to the default');
      // Every partition the service makes for those days takes its rows out of the default.
      const maintenance = new PartitionMaintenance(pool, { daysAhead: 10, retentionDays: undefined, intervalMs: 3_600_000, lockTimeoutMs: 2_000 }, createFakeClock(Date.now()), silent);
      assert.ok((await maintenance.runOnce()).movedFromDefault > 0);
      await maintenance.splitDefault();
      assert.equal(await db.count(), 5000);
      // The migrated rows are still keys: re-sending them stores nothing.
      const sink = new PostgresCopySink(pool, { copyTimeoutMs: 5_000 });
      const retried = sample.map((r) => queuedEvent({ tenant: r.tenant, occurred_at: r.occurred_at.toISOString() }, r.id));
      assert.equal(retried.length, 6);
      assert.equal((await sink.write(retried, { signal })).inserted, 0);
      assert.equal(await db.count(), 5000);
    } finally {
      await pool.end();
      await db.drop();
    }
  });

  it('takes an index built beforehand with CREATE UNIQUE INDEX CONCURRENTLY as the legacy partition’s key', async () => {
    const db = await createTestDatabase({ migrate: false });
    try {
      await runner({ ...options(db.url), count: await migrationsBefore() });
      await db.pool.query(seed);
      await db.pool.query('CREATE UNIQUE INDEX CONCURRENTLY events_tenant_id_occurred_at_key ON events (tenant, id, occurred_at)');
      const { rows: before } = await db.pool.query<{ oid: number }>(`SELECT 'events_tenant_id_occurred_at_key'::regclass::oid AS oid`);
      await migrate(db.url, { info: () => {} });
      const { rows } = await db.pool.query<{ oid: number; key: string }>(
        `SELECT conindid AS oid, pg_get_constraintdef(oid) AS key FROM pg_constraint WHERE conrelid = 'events_legacy'::regclass AND contype = 'p'`,
      );
      assert.deepEqual(rows, [{ oid: before[0]!.oid, key: 'PRIMARY KEY (tenant, id, occurred_at)' }]);
      assert.equal(await db.count(), 5000);
    } finally {
      await db.drop();
    }
  });
});

describe('the service and its partitions', () => {
  it('creates today’s partition and PARTITION_DAYS_AHEAD more before it accepts events, and an event posted twice is stored once', async () => {
    const db = await createTestDatabase();
    const clock = createFakeClock(Date.UTC(2026, 4, 10, 9));
    const service = await buildTestService(db.url, { ACK_MODE: 'committed', PARTITION_DAYS_AHEAD: '1' }, { clock });
    try {
      assert.deepEqual(await partitionsOf(db), ['events_default', 'events_p20260510', 'events_p20260511']);
      const event = sampleEvent({ id: randomUUID(), occurred_at: '2026-05-10T08:59:00Z' });
      for (let i = 0; i < 2; i++) assert.equal((await service.app.inject({ method: 'POST', url: '/event', payload: event })).statusCode, 201);
      const { rows } = await db.pool.query<{ partition: string }>(`SELECT tableoid::regclass::text AS partition FROM events`);
      assert.deepEqual(rows, [{ partition: 'events_p20260510' }]);
    } finally {
      await service.close();
      await db.drop();
    }
  });
});
