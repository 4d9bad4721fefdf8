/**
 * `npm run bench:audit [-- --rounds=N] [--batches=N]`
 *
 * What the audit chain (AUDIT_CHAIN=on) costs the COPY sink: PostgresCopySink written to directly
 * (no HTTP, no batcher), batches of 500 (BATCH_MAX_SIZE's default) over 5 tenants, at one and two
 * writers at once (FLUSH_CONCURRENCY's default is 2: two writers take the same tenants' heads, so
 * they queue for them), in four modes on one PostgreSQL (embedded, fsync on; or DATABASE_URL), each
 * on a fresh migrated database of its own:
 *  - `off` / `on`: batches without stored keys — the plain COPY; with the chain, then the rows read
 *    back for their leaves, the heads locked, one link per tenant, COMMIT;
 *  - `off-staged` / `on-staged`: each batch holding one stored id — the staged way; with the chain,
 *    the INSERT's RETURNING hands back the leaves.
 * The modes take turns in rounds (the first mode rotates), so drift hits them alike. Prints a
 * Markdown table; at the end each chained database is verified (src/audit/verify.ts).
 */
import { verifyChain } from '../src/audit/verify.ts';
import { PostgresCopySink } from '../src/sink/postgres-copy-sink.ts';
import { parseBenchArgs } from './lib/options.ts';
import { runSinkModes } from './lib/sink-modes.ts';

const TENANTS = 5;
const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { rounds: { default: 6, min: 1, max: 100 }, batches: { default: 20, min: 2, max: 1000 } },
});

await runSinkModes({
  title: `Audit chain cost per batch (bench/audit-chain.ts, ${args.rounds} rounds × ${args.batches} batches per mode and row, ${TENANTS} tenants per batch)`,
  sizes: [500],
  writers: [1, 2],
  rounds: args.rounds,
  batches: args.batches,
  tenants: TENANTS,
  sinkFor: (mode, pool) => new PostgresCopySink(pool, { copyTimeoutMs: 30_000, auditChain: mode.startsWith('on') ? {} : undefined }),
  // Each chained database verified once (a bench that broke the chain would say so).
  check: async (mode, pool) => {
    const lines: string[] = [];
    for (let t = 0; t < TENANTS; t += 1) {
      const report = await verifyChain(pool, { tenant: `tenant-${t}` });
      if (!report.ok || t === 0) lines.push(`${mode} tenant-${t}: ${report.ok ? `intact, ${report.links} links, ${report.events} events` : `BROKEN: ${report.finding?.message}`}`);
    }
    return lines;
  },
  checkLabel: 'Verified after the run',
});
