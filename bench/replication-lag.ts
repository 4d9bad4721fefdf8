/**
 * `npm run bench:replication`: two embedded PostgreSQL 17 clusters on loopback (fsync on), kept in
 * step by `setupTwoRegions` (src/db/replication.ts). Measures, in one run:
 *  - bulk: --rows rows inserted in A in batches of --batch (INSERT … ON CONFLICT DO NOTHING, as the
 *    sink's staged move does), and the time until B has them all, with the apply-side triggers
 *    enabled (the design) and disabled (plain logical replication: the baseline), as ratios;
 *  - lag: one batch of --batch rows at a time, the time from A's COMMIT to the rows visible in B.
 * Bounded: `flock -o /tmp/bench.lock timeout 180 npm run bench:replication`.
 */
import { mkdtemp, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.ts';
import { migrate } from '../src/db/migrate.ts';
import { setupTwoRegions } from '../src/db/replication.ts';
import { describeMachine } from './lib/machine.ts';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '100000' }, batch: { type: 'string', default: '1000' }, samples: { type: 'string', default: '30' } }, strict: true });
const ROWS = Number(values.rows);
const BATCH = Number(values.batch);
const SAMPLES = Number(values.samples);
const logger = pino({ level: 'warn' });

const INSERT = `INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id, metadata)
  SELECT gen_random_uuid(), $1, now() - (g % 3600) * interval '1 second', now(), 'document.update', 'user:' || g, '{"k":1}'::jsonb
    FROM generate_series(1, $2::int) g ON CONFLICT DO NOTHING`;

const scratch = await mkdtemp(path.join(tmpdir(), 'bench-replication-'));
await chmod(scratch, 0o711);
const servers = [];
try {
  for (const name of ['a', 'b']) {
    const server = await startEmbeddedPostgres({ dataDir: path.join(scratch, name, 'postgres'), logger, settings: { wal_level: 'logical' } });
    servers.push(server);
    await migrate(server.url, logger);
  }
  const [a, b] = servers.map((server) => new pg.Pool({ connectionString: server.url, max: 2 })) as [pg.Pool, pg.Pool];
  const [ca, cb] = [await a.connect(), await b.connect()];
  try {
    await setupTwoRegions(ca, cb, servers[0]!.url, servers[1]!.url);
  } finally {
    ca.release();
    cb.release();
  }
  const countIn = async (pool: pg.Pool, tenant: string) => Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE tenant = $1', [tenant])).rows[0]!.n);
  const until = async (condition: () => Promise<boolean>) => {
    const deadline = performance.now() + 60_000;
    while (!(await condition())) {
      if (performance.now() > deadline) throw new Error('not replicated within 60 s');
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  };

  out(`machine: ${JSON.stringify(describeMachine())}`);
  const bulk: Record<string, { insertMs: number; caughtUpMs: number }> = {};
  const MODES = [
    ['plain (triggers disabled)', 'DISABLE', 'DISABLE'],
    ['skip trigger only', 'ENABLE REPLICA', 'DISABLE'],
    ['with the apply-side triggers', 'ENABLE REPLICA', 'ENABLE REPLICA'],
  ] as const;
  for (const [mode, skip, count] of MODES) {
    await b.query(`ALTER TABLE events ${skip} TRIGGER events_skip_replicated_duplicate`);
    await b.query(`ALTER TABLE events ${count} TRIGGER events_count_replicated`);
    const tenant = `bulk-${mode}`;
    const started = performance.now();
    for (let done = 0; done < ROWS; done += BATCH) await a.query(INSERT, [tenant, Math.min(BATCH, ROWS - done)]);
    const inserted = performance.now();
    await until(async () => (await countIn(b, tenant)) === ROWS);
    bulk[mode] = { insertMs: inserted - started, caughtUpMs: performance.now() - started };
    out(`bulk ${mode}: ${ROWS} rows inserted in A in ${(inserted - started).toFixed(0)} ms; all in B after ${(performance.now() - started).toFixed(0)} ms`);
  }
  const plain = bulk['plain (triggers disabled)']!;
  for (const [mode] of MODES.slice(1)) out(`ratio, time until B has all rows: ${mode} / plain = ${(bulk[mode]!.caughtUpMs / plain.caughtUpMs).toFixed(2)}`);

  const lags: number[] = [];
  const commits: number[] = [];
  for (let i = 0; i < SAMPLES; i += 1) {
    const tenant = `lag-${i}`;
    const started = performance.now();
    await a.query(INSERT, [tenant, BATCH]);
    const committed = performance.now();
    await until(async () => (await countIn(b, tenant)) === BATCH);
    commits.push(committed - started);
    lags.push(performance.now() - committed);
  }
  const quantile = (xs: number[], q: number) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
  out(`lag, A's COMMIT of ${BATCH} rows → visible in B (${SAMPLES} samples): p50 ${quantile(lags, 0.5).toFixed(1)} ms, p90 ${quantile(lags, 0.9).toFixed(1)} ms, max ${Math.max(...lags).toFixed(1)} ms; A's own insert+commit p50 ${quantile(commits, 0.5).toFixed(1)} ms (ratio lag/commit p50 ${(quantile(lags, 0.5) / quantile(commits, 0.5)).toFixed(2)})`);
  await a.end();
  await b.end();
} finally {
  for (const server of servers) await server.stop();
  await rm(scratch, { recursive: true, force: true });
}

function out(line: string) {
  process.stdout.write(`${line}\n`);
}
