/**
 * `npm run bench:partition -- --phase=<setup|copy|retention|drop>`: the service's write path (PostgresCopySink:
 * plain COPY, and COPY to staging + INSERT … ON CONFLICT) into `events` already holding --rows rows
 * (default 10M), unpartitioned (migrations up to 0003) vs partitioned by day (0004), and the time to
 * apply retention to one day: drop its partition vs DELETE its rows. Two databases on DATABASE_URL's
 * server (default the machine's postgres://postgres@127.0.0.1:5432/test): bench_part_flat and
 * bench_part_partitioned, kept between phases (setup is slow) and removed by --phase=drop.
 * Each phase is one bounded run: `flock -o /tmp/bench.lock timeout 180 npm run bench:partition -- --phase=…`.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { runner } from 'node-pg-migrate';
import { pino } from 'pino';
import type { Clock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { migrate, MIGRATIONS_DIR } from '../src/db/migrate.ts';
import { dayStart, PartitionMaintenance } from '../src/db/partition-maintenance.ts';
import { createPool } from '../src/db/pool.ts';
import { encodeEventRow } from '../src/event/copy-row.ts';
import type { QueuedEvent } from '../src/event/queued-event.ts';
import { auditEventSchema } from '../src/event/schema.ts';
import { PostgresCopySink } from '../src/sink/postgres-copy-sink.ts';
import { makeEvent } from './lib/event-body.ts';
import { describeMachine } from './lib/machine.ts';

const DAY_MS = 86_400_000;
/** USER_HZ: Linux reports /proc/<pid>/stat times in 1/100 s. */
const CLOCK_TICKS_PER_SECOND = 100;
const SEED_DAYS = 30;
const LAYOUTS = ['flat', 'partitioned'] as const;
type Layout = (typeof LAYOUTS)[number];

const { values } = parseArgs({
  options: { phase: { type: 'string' }, rows: { type: 'string', default: '10000000' }, rounds: { type: 'string', default: '3' }, batches: { type: 'string', default: '200' } },
  strict: true,
});
const phase = values.phase;
const seedRows = Number(values.rows);
const rounds = Number(values.rounds);
const batchesPerRound = Number(values.batches);
const server = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const logger = pino({ level: 'warn' });
const today = dayStart(Date.now());
const firstSeedDay = today - SEED_DAYS * DAY_MS;

function urlOf(layout: Layout): string {
  const url = new URL(server);
  url.pathname = `/bench_part_${layout}`;
  return url.toString();
}

async function onServer(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

const fixedClock = (ms: number): Clock => ({ now: () => ms, setTimeout: () => 0, clearTimeout: () => {} });
const seconds = (ms: number) => (ms / 1000).toFixed(2);

/** --rows rows over the SEED_DAYS days before today, loaded with the key and indexes dropped and then rebuilt (fast). */
async function setup(layout: Layout): Promise<void> {
  await onServer(`DROP DATABASE IF EXISTS bench_part_${layout} WITH (FORCE)`);
  await onServer(`CREATE DATABASE bench_part_${layout}`);
  const url = urlOf(layout);
  if (layout === 'flat') {
    await runner({ databaseUrl: url, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'ingest_migrations', count: 3, log: () => {} });
  } else {
    await migrate(url, logger);
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    await new PartitionMaintenance(pool, { daysAhead: SEED_DAYS + 7, retentionDays: undefined, intervalMs: DAY_MS, lockTimeoutMs: 10_000 }, fixedClock(firstSeedDay), logger).runOnce();
    await pool.end();
  }
  const started = performance.now();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query(`ALTER TABLE events DROP CONSTRAINT events_pkey; DROP INDEX events_tenant_occurred_at_idx, events_tenant_actor_occurred_at_idx`);
  const half = Math.floor(seedRows / 2);
  const load = async (from: number, to: number) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`SET synchronous_commit = off`);
    await c.query(
      `INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id, actor_type, target_id, target_type, outcome, source_ip, metadata)
       SELECT md5('seed' || n)::uuid, 'tenant-' || (n % 200), to_timestamp($3::double precision / 1000) + (n % ${SEED_DAYS}) * interval '1 day' + (n % 86400) * interval '1 second',
              now(), 'user.login', 'user_' || (n % 50000), 'user', 'doc_' || (n % 99991), 'document', 'success', '203.0.113.7',
              jsonb_build_object('request_id', 'req_' || n)
         FROM generate_series($1::bigint, $2::bigint) AS n`,
      [from, to, firstSeedDay],
    );
    await c.end();
  };
  await Promise.all([load(1, half), load(half + 1, seedRows)]);
  const loaded = performance.now();
  await client.query(`SET maintenance_work_mem = '1GB'`);
  await client.query(`ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (tenant, ${layout === 'flat' ? 'id' : 'id, occurred_at'})`);
  await client.query(`CREATE INDEX events_tenant_occurred_at_idx ON events (tenant, occurred_at DESC)`);
  await client.query(`CREATE INDEX events_tenant_actor_occurred_at_idx ON events (tenant, actor_id, occurred_at DESC)`);
  await client.query(`VACUUM (ANALYZE) events`);
  const { rows } = await client.query<{ n: string; size: string }>(`SELECT count(*) AS n, pg_size_pretty(pg_total_relation_size('events'::regclass) + coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'events'::regclass), 0)) AS size FROM events`);
  await client.end();
  console.log(`setup ${layout}: ${rows[0]!.n} rows (${rows[0]!.size}) loaded in ${seconds(loaded - started)} s, key + indexes + vacuum in ${seconds(performance.now() - loaded)} s`);
}

/** Rows as the pipeline queues them, occurred_at within today (the partition new events land in). */
const TEMPLATES = Array.from({ length: 1024 }, (_, i) => auditEventSchema.parse(makeEvent(i)));

function freshBatches(count: number, size: number, duplicateFrom?: QueuedEvent[][]): QueuedEvent[][] {
  const receivedAt = new Date().toISOString();
  return Array.from({ length: count }, (_, b) => {
    const batch = Array.from({ length: size }, (_, i): QueuedEvent => {
      const n = b * size + i;
      const event = { ...TEMPLATES[n % TEMPLATES.length]!, occurred_at: new Date(today + ((n * 997) % DAY_MS)).toISOString() };
      const id = randomUUID();
      const row = encodeEventRow(event, id, receivedAt);
      return { id, tenant: event.tenant, row, bytes: Buffer.byteLength(row) };
    });
    // The staged way: one event already stored per batch makes the plain COPY refuse it (23505).
    if (duplicateFrom !== undefined) batch[0] = duplicateFrom[b % duplicateFrom.length]![0]!;
    return batch;
  });
}

/** FLUSH_CONCURRENCY (2) writers through one PostgresCopySink, as the service flushes. */
async function writeAll(layout: Layout, batches: QueuedEvent[][]): Promise<{ rowsPerSecond: number; inserted: number; cpuMsPer1000: number }> {
  const config = loadConfig({ DATABASE_URL: urlOf(layout) });
  const pool = createPool(urlOf(layout), config.db, logger);
  const sink = new PostgresCopySink(pool, { copyTimeoutMs: 60_000 });
  const signal = new AbortController().signal;
  let next = 0;
  let inserted = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: config.batch.flushConcurrency }, async () => {
      while (next < batches.length) {
        const result = await sink.write(batches[next++]!, { signal });
        inserted += result.inserted;
      }
    }),
  );
  const elapsed = performance.now() - started;
  const backendCpuMs = await backendCpuMsOf(layout);
  await pool.end();
  const rows = batches.reduce((sum, batch) => sum + batch.length, 0);
  return { rowsPerSecond: rows / (elapsed / 1000), inserted, cpuMsPer1000: (backendCpuMs / rows) * 1000 };
}

/**
 * CPU time (user + system, /proc/<pid>/stat) of the database's backends: the pool's connections,
 * opened for this run and still open. Less moved by other work on the machine than wall time.
 */
async function backendCpuMsOf(layout: Layout): Promise<number> {
  const client = new pg.Client({ connectionString: urlOf(layout) });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
  await client.end();
  let ticks = 0;
  for (const { pid } of rows) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

async function copy(): Promise<void> {
  const size = loadConfig({}).batch.maxSize;
  const results: Record<string, number[]> = {};
  for (let round = 0; round < rounds; round++) {
    for (const layout of round % 2 === 0 ? LAYOUTS : [...LAYOUTS].reverse()) {
      const plain = freshBatches(batchesPerRound, size);
      const first = await writeAll(layout, plain);
      const staged = await writeAll(layout, freshBatches(batchesPerRound, size, plain));
      (results[`${layout} plain`] ??= []).push(first.rowsPerSecond);
      (results[`${layout} staged`] ??= []).push(staged.rowsPerSecond);
      (results[`${layout} plain cpu`] ??= []).push(first.cpuMsPer1000);
      (results[`${layout} staged cpu`] ??= []).push(staged.cpuMsPer1000);
      console.log(
        `round ${round + 1} ${layout}: plain COPY ${first.rowsPerSecond.toFixed(0)} rows/s (${first.cpuMsPer1000.toFixed(1)} backend CPU-ms/1000), ` +
          `staged ${staged.rowsPerSecond.toFixed(0)} rows/s (${staged.cpuMsPer1000.toFixed(1)}) (inserted ${first.inserted} + ${staged.inserted})`,
      );
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`\n| write path (batches of ${size}, 2 writers; median of ${rounds}) | unpartitioned rows/s | partitioned rows/s | ratio | unpartitioned backend CPU-ms / 1000 rows | partitioned | ratio |`);
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const path of ['plain', 'staged']) {
    const flat = median(results[`flat ${path}`]!);
    const part = median(results[`partitioned ${path}`]!);
    const flatCpu = median(results[`flat ${path} cpu`]!);
    const partCpu = median(results[`partitioned ${path} cpu`]!);
    console.log(
      `| ${path === 'plain' ? 'plain COPY' : 'COPY to staging + INSERT … ON CONFLICT'} | ${flat.toFixed(0)} | ${part.toFixed(0)} | ${(part / flat).toFixed(2)} | ${flatCpu.toFixed(1)} | ${partCpu.toFixed(1)} | ${(partCpu / flatCpu).toFixed(2)} |`,
    );
  }
}

/** One day of rows (the oldest seeded day): DROP its partition vs DELETE them (and the VACUUM a DELETE needs). */
async function retention(): Promise<void> {
  const pool = new pg.Pool({ connectionString: urlOf('partitioned'), max: 1 });
  const { rows: dayRows } = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM events WHERE occurred_at >= $1 AND occurred_at < $2`,
    [new Date(firstSeedDay), new Date(firstSeedDay + DAY_MS)],
  );
  const started = performance.now();
  const report = await new PartitionMaintenance(pool, { daysAhead: 0, retentionDays: SEED_DAYS - 1, intervalMs: DAY_MS, lockTimeoutMs: 10_000 }, fixedClock(today), logger).runOnce();
  const dropMs = performance.now() - started;
  await pool.end();
  const flat = new pg.Client({ connectionString: urlOf('flat') });
  await flat.connect();
  const deleteStarted = performance.now();
  const deleted = await flat.query(`DELETE FROM events WHERE occurred_at >= $1 AND occurred_at < $2`, [new Date(firstSeedDay), new Date(firstSeedDay + DAY_MS)]);
  const deleteMs = performance.now() - deleteStarted;
  const vacuumStarted = performance.now();
  await flat.query('VACUUM events');
  const vacuumMs = performance.now() - vacuumStarted;
  await flat.end();
  console.log(`retention of one day: partitioned dropped ${report.dropped.join(', ') || 'nothing'} (${dayRows[0]!.n} rows) in ${dropMs.toFixed(0)} ms; unpartitioned DELETE of ${deleted.rowCount} rows ${deleteMs.toFixed(0)} ms + VACUUM ${vacuumMs.toFixed(0)} ms`);
  console.log(`| retention of one day (${deleted.rowCount} rows) | DROP partition ${dropMs.toFixed(0)} ms | DELETE ${deleteMs.toFixed(0)} ms + VACUUM ${vacuumMs.toFixed(0)} ms | ${((deleteMs + vacuumMs) / dropMs).toFixed(0)}× |`);
}

const machine = describeMachine();
console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}; server ${server.replace(/\/\/[^@]*@/, '//')}`);
if (phase === 'setup') for (const layout of LAYOUTS) await setup(layout);
else if (phase === 'setup-flat' || phase === 'setup-partitioned') await setup(phase === 'setup-flat' ? 'flat' : 'partitioned');
else if (phase === 'copy') await copy();
else if (phase === 'retention') await retention();
else if (phase === 'drop') for (const layout of LAYOUTS) await onServer(`DROP DATABASE IF EXISTS bench_part_${layout} WITH (FORCE)`);
else throw new Error('--phase must be setup, setup-flat, setup-partitioned, copy, retention or drop');
