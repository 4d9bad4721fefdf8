/**
 * `npm run bench:replicas [-- --duration=8 --warmup=3 --connections=64]`
 *
 * 1 → 2 → 4 service processes (src/server.ts with npm start's node flags, each its own DATA_DIR)
 * against one PostgreSQL (embedded unless DATABASE_URL), a fresh database per part. The load is
 * one generator process per replica (autocannon takes one origin), the 64 connections split evenly
 * over them: what a connection-balancing load balancer does. The generators' runs are timed, all
 * the same length, so the replicas are loaded side by side for the whole run (counted runs sized
 * from each warm-up end at different times and leave one replica alone at the end). A timed
 * autocannon run drops the requests in flight at its end, which may still be stored: stored rows
 * are checked to lie between the 202s and the 202s plus the connections. CPU is read from /proc around the measured run and the
 * drain after it: the service processes (summed), PostgreSQL's process tree, the generators (each
 * reports its own), and the rest of the machine.
 */
import path from 'node:path';
import type { LoadOptions, LoadResult } from './generators/load.ts';
import { machineBusyMs, processCpuMs, serverTreeCpuMs } from './lib/cpu.ts';
import { countRows, createModeDatabase } from './lib/database.ts';
import { SERVER_STOP_GRACE_MS, progress, runLoadProcess, type BenchOptions, type Context, type HttpServer } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { stopChild } from './lib/processes.ts';
import { fmt, ms, runScenario, startIngestService, waitForDrain } from './lib/scenario.ts';
import os from 'node:os';

const REPLICA_COUNTS = [1, 2, 4];

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: {
    duration: { default: 8, min: 2, max: 30 },
    warmup: { default: 3, min: 1, max: 10 },
    connections: { default: 64, min: 4, max: 256 },
  },
});

interface Part {
  readonly replicas: number;
  readonly eventsPerSecond: number;
  readonly ok2xx: number;
  readonly notAccepted: number;
  readonly seconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly rowsMeasured: number;
  /** Every 202 stored, and no more rows than the requests a timed run can leave in flight. */
  readonly ledger: boolean;
  /** CPU ms per 1000 events. */
  readonly cpuPer1000: { service: number; postgres: number; generator: number; other: number };
  /** Share of the machine's cores busy during the measured window. */
  readonly machineBusy: number;
  readonly exitCodes: (number | null)[];
}

const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

async function runPart(ctx: Context, replicas: number): Promise<Part> {
  const db = await createModeDatabase(ctx.server, `replicas_${replicas}`);
  progress(`${replicas} replica(s): starting them at once on ${db.name}`);
  const servers: HttpServer[] = await Promise.all(Array.from({ length: replicas }, (_, i) => startIngestService(ctx, db, `r${replicas}-service-${i}`, {})));
  const exitCodes: (number | null)[] = [];
  try {
    const perReplica = Math.floor(ctx.options.connections / replicas);
    const base = (server: HttpServer): LoadOptions => ({ url: `${server.baseUrl}/event`, connections: perReplica, durationSeconds: ctx.options.warmupSeconds });
    // Warm-ups in parallel (JIT, pools, the same machine load as the measured run).
    await Promise.all(servers.map((server, i) => runLoadProcess(ctx, `r${replicas}-${i}-warmup`, base(server))));
    const measured = servers.map((server): LoadOptions => ({ ...base(server), durationSeconds: ctx.options.durationSeconds }));
    await Promise.all(servers.map((server) => waitForDrain(`${server.baseUrl}/metrics`)));
    const rows0 = await countRows(db);
    const pids = servers.map((server) => server.child.process.pid);
    const service0 = sum(pids.map((pid) => processCpuMs(pid) ?? 0));
    const postgres0 = serverTreeCpuMs(ctx.server.postmasterPid) ?? 0;
    const machine0 = machineBusyMs() ?? 0;
    const started = Date.now();
    const loads: LoadResult[] = await Promise.all(servers.map((_, i) => runLoadProcess(ctx, `r${replicas}-${i}`, measured[i]!)));
    const seconds = (Date.now() - started) / 1000;
    await Promise.all(servers.map((server) => waitForDrain(`${server.baseUrl}/metrics`)));
    const service = sum(pids.map((pid) => processCpuMs(pid) ?? 0)) - service0;
    const postgres = (serverTreeCpuMs(ctx.server.postmasterPid) ?? 0) - postgres0;
    const machine = (machineBusyMs() ?? 0) - machine0;
    const generator = sum(loads.map((load) => load.generatorCpuMs));
    const rowsMeasured = (await countRows(db)) - rows0;
    const ok2xx = sum(loads.map((load) => load.ok2xx));
    const per1000 = (cpuMs: number) => cpuMs / (ok2xx / 1000);
    return {
      replicas,
      // The generators run side by side: the wall time from the first start to the last end.
      eventsPerSecond: ok2xx / Math.max(...loads.map((load) => load.durationSeconds)),
      ok2xx,
      notAccepted: sum(loads.map((load) => load.non2xx + load.errors + load.timeouts)),
      seconds,
      // The slowest replica's percentiles (autocannon's are per generator).
      p50Ms: Math.max(...loads.map((load) => load.latency.p50)),
      p99Ms: Math.max(...loads.map((load) => load.latency.p99)),
      rowsMeasured,
      ledger: rowsMeasured >= ok2xx && rowsMeasured <= ok2xx + ctx.options.connections,
      cpuPer1000: { service: per1000(service), postgres: per1000(postgres), generator: per1000(generator), other: per1000(Math.max(0, machine - service - postgres - generator)) },
      machineBusy: machine / (seconds * 1000 * os.availableParallelism()),
      exitCodes,
    };
  } finally {
    for (const code of await Promise.all(servers.map((server) => stopChild(server.child, SERVER_STOP_GRACE_MS)))) exitCodes.push(code);
  }
}

function render(ctx: Context, parts: readonly Part[]): string {
  const baseline = parts[0]!.eventsPerSecond;
  const lines = [
    `## Replicas: 1 → ${REPLICA_COUNTS.at(-1)} service processes on one PostgreSQL, ${ctx.options.connections} connections split over them`,
    '',
    '| replicas | events/s | × 1 replica | p50 / p99 ms (slowest replica) | CPU ms per 1000 events: service / postgres / load gen / other | machine busy | 202s | stored in the run | ledger | not 202 | exit codes |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |',
  ];
  for (const part of parts) {
    const cpu = part.cpuPer1000;
    lines.push(
      `| ${part.replicas} | ${fmt(part.eventsPerSecond)} | ${(part.eventsPerSecond / baseline).toFixed(2)} | ${ms(part.p50Ms)} / ${ms(part.p99Ms)} | ${fmt(cpu.service)} / ${fmt(cpu.postgres)} / ${fmt(cpu.generator)} / ${fmt(cpu.other)} | ${(part.machineBusy * 100).toFixed(0)} % | ${fmt(part.ok2xx)} | ${fmt(part.rowsMeasured)} | ${part.ledger ? 'PASS' : 'FAIL'} | ${fmt(part.notAccepted)} | ${part.exitCodes.join(', ')} |`,
    );
  }
  const total = (part: Part) => part.cpuPer1000.service + part.cpuPer1000.postgres + part.cpuPer1000.generator + part.cpuPer1000.other;
  lines.push(
    '',
    `- CPU ms per 1000 events, all parts: ${parts.map((part) => `${part.replicas} → ${fmt(total(part))}`).join(', ')}; at ${os.availableParallelism()} cores the machine can spend ${fmt(os.availableParallelism() * 1000)} CPU ms per second, so, if every busy CPU ms were this work's ("other" includes other work on the machine), the ceiling is about ${parts.map((part) => fmt((os.availableParallelism() * 1_000_000) / total(part))).join(' / ')} events/s.`,
    `- Method: each part a fresh database; the replicas start at once (node-pg-migrate's advisory lock lets one migrate); a ${ctx.options.warmupSeconds} s warm-up, then a ${ctx.options.durationSeconds} s run, every generator at once; CPU and rows over the run and the drain after it. "stored in the run" counts rows added between the drain before and the drain after; ledger PASS: at least the 202s, at most the 202s plus the ${ctx.options.connections} requests a timed run can drop in flight.`,
    `- Where it saturates: "machine busy" is the share of all cores busy over the run; near 100 % the limit is CPU, and the CPU columns say whose.`,
  );
  return lines.join('\n');
}

const options: BenchOptions = {
  cpuProf: false,
  durationSeconds: args.duration,
  warmupSeconds: args.warmup,
  connections: args.connections,
  rateConnections: 32,
  lowRate: 0,
};
await runScenario(
  'replicas',
  options,
  `service processes with npm start's node flags, DATABASE_URL shared, DATA_DIR each; one autocannon generator process per replica (closed loop, POST /event, ${options.connections} connections in all); loopback only`,
  async (ctx) => {
    const parts: Part[] = [];
    for (const replicas of REPLICA_COUNTS) parts.push(await runPart(ctx, replicas));
    return { markdown: render(ctx, parts), json: { parts, runDir: path.basename(ctx.runDir) } };
  },
);
