/**
 * `npm run bench:rollups [-- --rounds=N] [--batches=N]`
 *
 * What the per-minute rollup (event_counts) costs the COPY sink per batch: PostgresCopySink
 * written to directly (no HTTP, no batcher), in three modes on one PostgreSQL (embedded, fsync on;
 * or DATABASE_URL), each on a fresh migrated database of its own:
 *  - `off`: rollups off, batches without stored keys — the plain COPY (BEGIN, COPY, COMMIT);
 *  - `off-staged`: rollups off, each batch holding one stored id — the staged way (COPY into the
 *    temp table, INSERT … ON CONFLICT DO NOTHING + COMMIT): the part of the rollup's cost that is
 *    only the staging;
 *  - `on`: rollups on, batches without stored keys — the plain COPY, then the batch's own rows
 *    coalesced and upserted into event_counts, COMMIT;
 *  - `on-staged`: rollups on, each batch holding one stored id — staged, the inserted rows
 *    counted and upserted by the same statement, COMMIT (a WAL replay, clients re-sending).
 * For batch sizes 100 and 500 (BATCH_MAX_SIZE's default) at one and two writers at once
 * (FLUSH_CONCURRENCY's default is 2; two writers share count rows, so they contend for them).
 * The modes take turns in rounds (the first mode rotates), so drift hits them alike. Events: 5
 * tenants × 10 actions over 3 minutes (150 count rows in all, nearly all of them in a batch of 500). Prints a Markdown table.
 */
import { PostgresCopySink } from '../src/sink/postgres-copy-sink.ts';
import { parseBenchArgs } from './lib/options.ts';
import { runSinkModes } from './lib/sink-modes.ts';

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { rounds: { default: 8, min: 1, max: 100 }, batches: { default: 30, min: 2, max: 1000 } },
});

await runSinkModes({
  title: `Rollup cost per batch (bench/rollup-cost.ts, ${args.rounds} rounds × ${args.batches} batches per mode and row)`,
  sizes: [100, 500],
  writers: [1, 2],
  rounds: args.rounds,
  batches: args.batches,
  tenants: 5,
  sinkFor: (mode, pool) => new PostgresCopySink(pool, { copyTimeoutMs: 30_000, rollups: mode.startsWith('on') }),
  // The identity, checked once on each rollup database (a bench that broke it would say so).
  check: async (mode, pool) => {
    const { rows } = await pool.query<{ off: string; keys: string }>(`SELECT (SELECT count(*) FROM event_counts) AS keys, count(*) AS off FROM (
      (SELECT tenant, action, date_trunc('minute', occurred_at, 'UTC'), count(*) FROM events GROUP BY 1, 2, 3
        EXCEPT ALL SELECT tenant, action, minute, count FROM event_counts)
      UNION ALL
      (SELECT tenant, action, minute, count FROM event_counts
        EXCEPT ALL SELECT tenant, action, date_trunc('minute', occurred_at, 'UTC'), count(*) FROM events GROUP BY 1, 2, 3)) AS d`);
    return [`${mode}: ${rows[0]!.off === '0' ? 'holds' : `BROKEN (${rows[0]!.off} rows differ)`} (${rows[0]!.keys} count rows)`];
  },
  checkLabel: 'Identity after the run',
});
