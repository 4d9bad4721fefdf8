import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.ts';
import { PartitionMaintenance } from '../../src/db/partition-maintenance.ts';
import { createPool } from '../../src/db/pool.ts';
import { DeadLetterQueue, toDeadLetterRecord } from '../../src/dlq/dead-letter-queue.ts';
import { deadLetterDirectory } from '../../src/dlq/dlq-files.ts';
import { redrive } from '../../src/dlq/redrive.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { PoisonSplittingSink } from '../../src/sink/poison-splitting-sink.ts';
import { minuteText } from '../../src/sink/minute-rollup.ts';
import { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { queuedEvent } from '../helpers/events.ts';
import { createFakeClock } from '../helpers/fake-clock.ts';
import { runScript } from '../helpers/run-script.ts';
import { buildTestService, sampleEvent, waitFor } from '../helpers/service.ts';
import { seededRandom } from '../../bench/generators/bursty-schedule.ts';

const signal = new AbortController().signal;

/** The n-th SQL block of the runbook's "Per-minute rollups wrong" section: the check (0), the rebuild (1). */
function runbookSql(n: number): string {
  const runbook = readFileSync(fileURLToPath(new URL('../../runbook.md', import.meta.url)), 'utf8');
  const section = runbook.slice(runbook.indexOf('## Per-minute rollups wrong'));
  const blocks = [...section.slice(0, section.indexOf('\n## ', 1)).matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks[n], `runbook.md has SQL block ${n} in "Per-minute rollups wrong"`);
  return blocks[n];
}

/** Rows on either side of the identity that the other side lacks: none when it holds (the runbook's check, verbatim). */
const IDENTITY_CHECK = runbookSql(0);

async function assertIdentity(pool: pg.Pool, expectedEvents?: number): Promise<void> {
  const { rows } = await pool.query(IDENTITY_CHECK);
  assert.deepEqual(rows, [], 'event_counts equals the per-minute count of events');
  if (expectedEvents !== undefined) {
    const total = await pool.query<{ events: string; counted: string | null }>(
      'SELECT (SELECT count(*) FROM events) AS events, (SELECT sum(count) FROM event_counts) AS counted',
    );
    assert.deepEqual(total.rows[0], { events: String(expectedEvents), counted: expectedEvents === 0 ? null : String(expectedEvents) });
  }
}

const TENANTS = ['t-a', 't-b', 't-c'];
const ACTIONS = ['doc.read', 'doc.update', "it's \"quoted\", {braced}\\"];
/** An instant inside one of a few minutes, seconds apart, across minute (and offset) boundaries. */
const OCCURRED = [
  '2026-11-22T05:00:00.000Z',
  '2026-11-22T05:00:59.999999Z',
  '2026-11-22T05:01:00Z',
  '2026-11-22T06:31:30+01:30',
  '2026-11-22T04:59:59.5-00:00',
  '1960-01-01T12:00:10Z',
  // PostgreSQL rounds to microseconds: the first is 05:01:00, the second stays in 05:00.
  '2026-11-22T05:00:59.9999996Z',
  '2026-11-22T05:00:59.99999949Z',
  '2026-11-22t05:00:00.5z',
  '2026-11-22 10:45:30+05:45',
  '0001-01-01T00:00:10+14:00',
];

const pick = <T>(items: readonly T[], random: () => number): T => items[Math.floor(random() * items.length)]!;


describe('per-minute rollups (event_counts)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let sink: PostgresCopySink;
  let dataDir: string;

  before(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, loadConfig({}).db, pino({ level: 'silent' }));
    sink = new PostgresCopySink(pool, { copyTimeoutMs: 5_000, rollups: true });
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-rollups-'));
  });
  beforeEach(async () => {
    await db.pool.query('TRUNCATE events, event_counts');
  });
  after(async () => {
    await pool.end();
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('counts a batch per tenant, action and UTC minute, in the transaction that stores it', async () => {
    const batch = [
      ...Array.from({ length: 5 }, () => queuedEvent({ tenant: 't-a', action: 'doc.read', occurred_at: '2026-11-22T05:00:00Z' })),
      ...Array.from({ length: 3 }, () => queuedEvent({ tenant: 't-a', action: 'doc.read', occurred_at: '2026-11-22T06:30:59.999+01:30' })),
      queuedEvent({ tenant: 't-a', action: 'doc.read', occurred_at: '2026-11-22T05:01:00Z' }),
      queuedEvent({ tenant: 't-b', action: 'doc.read', occurred_at: '2026-11-22T05:00:30Z' }),
    ];
    assert.deepEqual(await sink.write(batch, { signal }), { inserted: 10, deadLettered: [] });
    const { rows } = await db.pool.query<{ tenant: string; action: string; minute: string; count: string }>(
      `SELECT tenant, action, to_char(minute AT TIME ZONE 'UTC', 'HH24:MI') AS minute, count FROM event_counts ORDER BY 1, 2, 3`,
    );
    assert.deepEqual(rows, [
      { tenant: 't-a', action: 'doc.read', minute: '05:00', count: '8' },
      { tenant: 't-a', action: 'doc.read', minute: '05:01', count: '1' },
      { tenant: 't-b', action: 'doc.read', minute: '05:00', count: '1' },
    ]);
    await assertIdentity(db.pool, 10);
  });

  it('never counts a duplicate twice: a retried batch, a replayed event, a key repeated within a batch', async () => {
    const batch = Array.from({ length: 20 }, (_, i) => queuedEvent({ tenant: pick(TENANTS, () => i / 20), action: 'doc.update' }));
    await sink.write(batch, { signal });
    assert.deepEqual(await sink.write(batch, { signal }), { inserted: 0, deadLettered: [] }, 'the whole batch again (a retry after a lost COMMIT answer)');
    const fresh = queuedEvent({ tenant: 't-a', action: 'doc.update' });
    // The same id with other fields (a replay that re-encoded it): the stored row wins, and counts once.
    const replayed = queuedEvent({ tenant: batch[0]!.tenant, action: 'other.action' }, batch[0]!.id);
    assert.deepEqual(await sink.write([fresh, replayed, fresh, batch[1]!], { signal }), { inserted: 1, deadLettered: [] });
    await assertIdentity(db.pool, 21);
  });

  it('holds across a poison split: refused halves roll their counts back with their events', async () => {
    await db.pool.query("ALTER TABLE events ADD CONSTRAINT rollup_poison CHECK (action <> 'poison')");
    try {
      const deadLettered: QueuedEvent[] = [];
      const splitting = new PoisonSplittingSink(sink, {
        deadLetter: { write: (events) => Promise.resolve(void deadLettered.push(...events)) },
      });
      const batch = Array.from({ length: 64 }, (_, i) => queuedEvent({ tenant: 't-a', action: i % 13 === 5 ? 'poison' : 'doc.read' }));
      const result = await splitting.write(batch, { signal });
      assert.equal(result.inserted, 59);
      assert.equal(deadLettered.length, 5);
      await assertIdentity(db.pool, 59);
    } finally {
      await db.pool.query('ALTER TABLE events DROP CONSTRAINT rollup_poison');
    }
  });

  it('holds after a DLQ re-drive, and a second re-drive counts nothing again', async () => {
    const directory = deadLetterDirectory(dataDir);
    const stored = Array.from({ length: 4 }, () => queuedEvent({ tenant: 't-b', action: 'doc.read' }));
    await sink.write(stored, { signal });
    // Dead-lettered earlier: two never stored, and one that a later retry stored after all.
    const pending = [queuedEvent({ tenant: 't-b', action: 'doc.read' }), queuedEvent({ tenant: 't-c', action: 'doc.read' })];
    const queue = new DeadLetterQueue({ directory, clock: { now: () => Date.now() } });
    await queue.append([...pending, stored[2]!].map((event) => toDeadLetterRecord(event, new Error('outage'), 3, Date.now())));
    await queue.close();
    const first = await redrive({ directory, sink, batchSize: 2 });
    assert.deepEqual({ stored: first.stored, duplicates: first.duplicates }, { stored: 2, duplicates: 1 });
    await assertIdentity(db.pool, 6);
    const queueAgain = new DeadLetterQueue({ directory, clock: { now: () => Date.now() } });
    await queueAgain.append([...pending].map((event) => toDeadLetterRecord(event, new Error('outage'), 3, Date.now())));
    await queueAgain.close();
    const second = await redrive({ directory, sink, batchSize: 10 });
    assert.deepEqual({ stored: second.stored, duplicates: second.duplicates }, { stored: 0, duplicates: 2 });
    await assertIdentity(db.pool, 6);
  });

  it('holds with two flushes at once on the same count rows in opposite orders, without a deadlock', async () => {
    const second = new PostgresCopySink(pool, { copyTimeoutMs: 10_000, rollups: true });
    const keys = TENANTS.flatMap((tenant) => ACTIONS.map((action) => ({ tenant, action })));
    let expected = 0;
    const stored = queuedEvent({ tenant: 't-b', action: 'doc.read' });
    await sink.write([stored], { signal });
    expected += 1;
    const twoAtOnce = async (shared: QueuedEvent[]) => {
      // Both batches count every (tenant, action) of one minute, the second in reverse order. The
      // second also carries a stored id: it goes the staged way (RETURNING), the first by plain
      // COPY, so the two ways' upserts meet too.
      const left = [...shared, ...keys.map((key) => queuedEvent(key))];
      const right = [...shared, ...[...keys].reverse().map((key) => queuedEvent(key)), stored];
      const [a, b] = await Promise.all([sink.write(left, { signal }), second.write(right, { signal })]);
      assert.equal(a.inserted + b.inserted, shared.length + 2 * keys.length);
      expected += shared.length + 2 * keys.length;
    };
    // 1. They share ids (same order): one waits on the other's uncommitted rows, then skips them.
    for (let round = 0; round < 5; round += 1) {
      await twoAtOnce(Array.from({ length: 3 }, () => queuedEvent({ tenant: 't-a', action: 'doc.read' })));
    }
    await assertIdentity(db.pool, expected);
    // 2. Each count row takes 20 ms to write, so the two upserts overlap for sure: locking the rows
    //    in each batch's own order deadlocks here (40P01); in the one key order (ORDER BY) it cannot.
    await db.pool.query(`CREATE FUNCTION slow_count() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$;
      CREATE TRIGGER slow_count BEFORE INSERT ON event_counts FOR EACH ROW EXECUTE FUNCTION slow_count()`);
    try {
      for (let round = 0; round < 3; round += 1) await twoAtOnce([]);
    } finally {
      await db.pool.query('DROP TRIGGER slow_count ON event_counts; DROP FUNCTION slow_count()');
    }
    await assertIdentity(db.pool, expected);
  });

  it('holds for random batches of random events with duplicates, written two at a time (seeded)', async () => {
    const seed = 0x5eed;
    const random = seededRandom(seed);
    const splitting = new PoisonSplittingSink(sink, { deadLetter: { write: () => Promise.reject(new Error('nothing is poison here')) } });
    const sent: { event: QueuedEvent; occurred_at: string }[] = [];
    const keys = new Set<string>();
    for (let round = 0; round < 15; round += 1) {
      // Duplicates come from earlier rounds only: two open transactions inserting one new key in
      // opposite orders would deadlock on the events key, which is not what this test is about.
      const earlierRounds = [...sent];
      const batches = [0, 1].map(() =>
        Array.from({ length: 1 + Math.floor(random() * 60) }, () => {
          // A third of the events resend one stored before — same tenant, id and occurred_at, the key
          // (tenant, id, occurred_at) of the partitioned table, as a real retry does: a duplicate the
          // database skips. The other fields may differ (a replay that re-encoded it): the stored row wins.
          const earlier = earlierRounds.length > 0 && random() < 0.33 ? pick(earlierRounds, random) : undefined;
          const fields = {
            tenant: earlier?.event.tenant ?? pick(TENANTS, random),
            action: pick(ACTIONS, random),
            occurred_at: earlier?.occurred_at ?? pick(OCCURRED, random),
          };
          const event = queuedEvent(fields, earlier?.event.id ?? randomUUID());
          sent.push({ event, occurred_at: fields.occurred_at });
          return event;
        }),
      );
      await Promise.all(batches.map((batch) => splitting.write(batch, { signal })));
      for (const { event, occurred_at } of sent) keys.add(`${event.tenant}/${event.id}/${occurred_at}`);
      await assertIdentity(db.pool, keys.size);
    }
  });

  it('retention drops the counts of a dropped partition with it, and only those', async () => {
    const maintenance = (now: number, retentionDays?: number) =>
      new PartitionMaintenance(pool, { daysAhead: 1, retentionDays, intervalMs: 3_600_000, lockTimeoutMs: 2_000 }, createFakeClock(now), pino({ level: 'silent' }));
    await maintenance(Date.UTC(2026, 10, 22, 12)).runOnce(); // events_p20261122 and events_p20261123
    const day = (d: number, n: number) => Array.from({ length: n }, (_, i) => queuedEvent({ tenant: 't-a', action: 'doc.read', occurred_at: `2026-11-${d}T23:59:${String(i).padStart(2, '0')}Z` }));
    // The 22nd's last minute and the 23rd's first: neighbours across the dropped bound.
    await sink.write([...day(22, 5), ...day(23, 3), queuedEvent({ tenant: 't-b', action: 'doc.read', occurred_at: '2026-11-23T00:00:00Z' })], { signal });
    await sink.write([queuedEvent({ tenant: 't-c', action: 'late', occurred_at: '1960-01-01T12:00:10Z' })], { signal }); // the default partition
    await assertIdentity(db.pool, 10);
    const report = await maintenance(Date.UTC(2026, 10, 25, 1), 2).runOnce();
    assert.ok(report.dropped.includes('events_p20261122'), report.dropped.join());
    assert.ok(!report.dropped.includes('events_p20261123'), report.dropped.join());
    await assertIdentity(db.pool, 5);
  });

  it("finds events written without counting (the runbook's check), and the runbook's rebuild restores the identity", async () => {
    await sink.write(Array.from({ length: 7 }, () => queuedEvent({ tenant: 't-a', action: 'doc.read' })), { signal });
    const uncounted = new PostgresCopySink(pool, { copyTimeoutMs: 5_000, rollups: false });
    await uncounted.write(Array.from({ length: 3 }, () => queuedEvent({ tenant: 't-a', action: 'doc.read' })), { signal });
    await uncounted.write([queuedEvent({ tenant: 't-c', action: 'doc.update' })], { signal });
    const { rows } = await db.pool.query<{ problem: string; count: string }>(IDENTITY_CHECK);
    assert.deepEqual(rows.map((r) => [r.problem, r.count]).sort(), [
      ['extra in event_counts', '7'],
      ['missing or wrong in event_counts', '1'],
      ['missing or wrong in event_counts', '10'],
    ]);
    await db.pool.query(runbookSql(1));
    await assertIdentity(db.pool, 11);
  });

  it('cuts an occurred_at to the minute PostgreSQL computes for it (edge cases and 3,000 random ones)', async () => {
    const random = seededRandom(0x7133);
    const two = (n: number) => String(n).padStart(2, '0');
    const texts = [...OCCURRED, '2026-11-22T05:00:59.999999Z', '2026-11-22T05:00:59.999999999Z', '2026-11-22T05:00:58.9999999Z', '2026-12-31T23:59:59.9999995-00:30'];
    for (let i = 0; i < 3000; i += 1) {
      const second = random() < 0.5 ? 59 : Math.floor(random() * 60);
      const digits = Math.floor(random() * 10);
      const fraction = digits === 0 ? '' : `.${random() < 0.5 ? '9'.repeat(digits) : String(Math.floor(random() * 10 ** digits)).padStart(digits, '0')}`;
      const zone = random() < 0.3 ? 'Z' : `${random() < 0.5 ? '+' : '-'}${two(Math.floor(random() * 16))}:${two(Math.floor(random() * 60))}`;
      texts.push(`${1 + Math.floor(random() * 9999)}`.padStart(4, '0') + `-${two(1 + Math.floor(random() * 12))}-${two(1 + Math.floor(random() * 28))}T${two(Math.floor(random() * 24))}:${two(Math.floor(random() * 60))}:${two(second)}${fraction}${zone}`);
    }
    const { rows } = await db.pool.query<{ text: string; cut: string }>(
      `SELECT text, cut FROM unnest($1::text[], $2::text[]) AS r (text, cut)
        WHERE date_trunc('minute', text::timestamptz, 'UTC') IS DISTINCT FROM date_trunc('minute', cut::timestamptz, 'UTC')`,
      [texts, texts.map(minuteText)],
    );
    assert.deepEqual(rows, []);
    assert.equal(minuteText('2026-11-22T05:00:59.9999996Z'), '2026-11-22T05:00:59.9999996Z', 'kept whole: the database rounds it up');
    assert.equal(minuteText('2026-11-22 10:45:30.25+05:45'), '2026-11-22 10:45:00+05:45');
  });

  it('puts an event in its UTC minute whatever the session TimeZone (a zone with a sub-minute offset)', async () => {
    const monrovia = new pg.Pool({ connectionString: db.url, max: 1, options: '-c TimeZone=Africa/Monrovia' });
    try {
      // Liberia kept -00:44:30 until 1972: a local-time truncation moves 12:00:10Z to 11:59:30Z.
      const local = await monrovia.query<{ local: string; utc: string }>(
        `SELECT to_char(date_trunc('minute', t) AT TIME ZONE 'UTC', 'HH24:MI:SS') AS local,
                to_char(date_trunc('minute', t, 'UTC') AT TIME ZONE 'UTC', 'HH24:MI:SS') AS utc
           FROM (SELECT '1960-01-01T12:00:10Z'::timestamptz AS t) AS s`,
      );
      assert.deepEqual(local.rows[0], { local: '11:59:30', utc: '12:00:00' }, 'the session zone matters to date_trunc');
      const monroviaSink = new PostgresCopySink(monrovia, { copyTimeoutMs: 5_000, rollups: true });
      await monroviaSink.write([queuedEvent({ tenant: 't-a', action: 'doc.read', occurred_at: '1960-01-01T12:00:10Z' })], { signal });
      const { rows } = await db.pool.query<{ minute: string }>(`SELECT to_char(minute AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS minute FROM event_counts`);
      assert.deepEqual(rows, [{ minute: '1960-01-01 12:00:00' }]);
      await assertIdentity(db.pool, 1);
    } finally {
      await monrovia.end();
    }
  });
});

describe('ROLLUPS=on end to end: the service, its poison isolation, and `npm run dlq -- redrive`', () => {
  let db: TestDatabase;
  let dataDir: string;
  before(async () => {
    db = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), 'ingest-rollups-e2e-'));
  });
  after(async () => {
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps the identity through ingest with duplicates, dead-lettering, and a re-drive run twice', async () => {
    await db.pool.query("ALTER TABLE events ADD CONSTRAINT rollup_e2e CHECK (action NOT LIKE 'legacy.%')");
    const service = await buildTestService(db.url, { ROLLUPS: 'on', BATCH_MAX_SIZE: '50' }, { dataDir });
    const ids: string[] = [];
    const occurredAts: string[] = [];
    const storedAtOnce = new Set<string>();
    try {
      for (let i = 0; i < 120; i += 1) {
        // Every fifth request re-sends an earlier event (a client retry: the same id and occurred_at,
        // the key being (tenant, id, occurred_at)); every 17th is refused.
        const retry = i % 5 === 4;
        const id = retry ? ids[i - 3]! : randomUUID();
        const occurred_at = retry ? occurredAts[i - 3]! : new Date(Date.UTC(2026, 10, 22, 5, i % 4, i % 60)).toISOString();
        ids.push(id);
        occurredAts.push(occurred_at);
        const action = i % 17 === 0 ? 'legacy.import' : `doc.${i % 3}`;
        if (i % 17 !== 0) storedAtOnce.add(id);
        const response = await service.app.inject({ method: 'POST', url: '/event', payload: sampleEvent({ id, tenant: 'e2e', action, occurred_at }) });
        assert.equal(response.statusCode, 202);
      }
      await waitFor(() => service.pipeline.depth === 0, 10_000, 'every batch to settle');
    } finally {
      await service.close();
    }
    const distinct = new Set(ids).size;
    await assertIdentity(db.pool, storedAtOnce.size);
    assert.ok(storedAtOnce.size < distinct, 'some ids were only ever refused');
    await db.pool.query('ALTER TABLE events DROP CONSTRAINT rollup_e2e');
    const env = { DATA_DIR: dataDir, DATABASE_URL: db.url, ROLLUPS: 'on', LOG_LEVEL: 'silent' };
    const fixed = await runScript('dlq', ['redrive', '--json'], env);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal((JSON.parse(fixed.stdout) as { stored: number }).stored, distinct - storedAtOnce.size);
    await assertIdentity(db.pool, distinct);
    const again = await runScript('dlq', ['redrive', '--json'], env);
    assert.equal(again.code, 0, again.stderr);
    await assertIdentity(db.pool, distinct);
  });
});
