/**
 * `npm run bench:audit-service [-- --duration=S] [--pairs=N]`
 *
 * The audit chain's cost through the whole service: the real server (src/server.ts, its defaults:
 * WAL, batches of 500 / 200 ms, two flush slots) under a closed-loop full load of POST /event (64
 * connections, the load generator in its own process), AUDIT_CHAIN=off and =on taking turns (off, on,
 * off, on, …: drift hits both alike), each run on a fresh database of its own. Reports events/s
 * stored and PostgreSQL / service CPU per event, and verifies each chained database's tenants after its run.
 */
import pg from 'pg';
import { verifyChain } from '../src/audit/verify.ts';
import { createModeDatabase } from './lib/database.ts';
import { SERVER_STOP_GRACE_MS, type BenchOptions } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { stopChild } from './lib/processes.ts';
import { countedFullLoad, fmt, measureServiceRun, runScenario, startIngestService } from './lib/scenario.ts';

const args = parseBenchArgs(process.argv.slice(2), { numeric: { duration: { default: 6, min: 2, max: 30 }, pairs: { default: 2, min: 1, max: 5 } } });
const options: BenchOptions = { cpuProf: false, durationSeconds: args.duration, warmupSeconds: 2, connections: 64, rateConnections: 16, lowRate: 0 };

interface Run {
  readonly mode: 'off' | 'on';
  readonly eventsPerSecond: number;
  readonly stored: number;
  readonly p99Ms: number;
  readonly verified: string;
  /** CPU ms per 1000 events stored: the service, PostgreSQL, everything else on the machine. */
  readonly cpuPer1k: { readonly service: number; readonly postgres: number; readonly other: number };
}

await runScenario('audit-service', options, `load generator in its own process; AUDIT_CHAIN off/on alternating, ${args.pairs} pairs; loopback only`, async (ctx) => {
  const runs: Run[] = [];
  for (let pair = 0; pair < args.pairs; pair += 1) {
    for (const mode of ['off', 'on'] as const) {
      const db = await createModeDatabase(ctx.server, `audit_${mode}_${pair}`);
      const server = await startIngestService(ctx, db, `${mode}-${pair}`, { AUDIT_CHAIN: mode });
      try {
        const url = `${server.baseUrl}/event`;
        const measured = await countedFullLoad(ctx, `${mode}-${pair}-full`, { url, connections: options.connections, durationSeconds: options.durationSeconds });
        const run = await measureServiceRun(ctx, db, server, `${mode}-${pair}-full`, measured);
        let verified = '—';
        if (mode === 'on') {
          const pool = new pg.Pool({ connectionString: db.url, max: 1 });
          const { rows } = await pool.query<{ tenant: string }>('SELECT tenant FROM audit_chain_heads');
          const reports = await Promise.all(rows.map((row) => verifyChain(pool, { tenant: row.tenant })));
          verified = reports.every((r) => r.ok) ? `intact (${reports.reduce((n, r) => n + r.events, 0)} events, ${reports.reduce((n, r) => n + r.links, 0)} links)` : 'BROKEN';
          await pool.end();
        }
        const per1k = (cpuMs: number | undefined) => ((cpuMs ?? Number.NaN) / run.stored) * 1000;
        const cpuPer1k = { service: per1k(run.cpu.serverMs), postgres: per1k(run.cpu.postgresMs), other: per1k(run.cpu.otherMs) };
        runs.push({ mode, eventsPerSecond: run.stored / run.load.durationSeconds, stored: run.stored, p99Ms: run.load.latency.p99, verified, cpuPer1k });
      } finally {
        await stopChild(server.child, SERVER_STOP_GRACE_MS);
      }
    }
  }
  const mean = (mode: 'off' | 'on') => runs.filter((r) => r.mode === mode).reduce((n, r) => n + r.eventsPerSecond, 0) / runs.filter((r) => r.mode === mode).length;
  const lines = [
    '| run | AUDIT_CHAIN | events stored | events/s stored | HTTP p99 ms | CPU ms / 1000 events: service · PostgreSQL · other | chain |',
    '| ---: | --- | ---: | ---: | ---: | ---: | --- |',
    ...runs.map(
      (r, i) =>
        `| ${i + 1} | ${r.mode} | ${fmt(r.stored)} | ${fmt(r.eventsPerSecond)} | ${r.p99Ms.toFixed(1)} | ${fmt(r.cpuPer1k.service)} · ${fmt(r.cpuPer1k.postgres)} · ${fmt(r.cpuPer1k.other)} | ${r.verified} |`,
    ),
    '',
    `Mean events/s: off ${fmt(mean('off'))}, on ${fmt(mean('on'))}: on/off = ${(mean('on') / mean('off')).toFixed(2)}×.`,
  ];
  return { markdown: lines.join('\n'), json: runs };
});
