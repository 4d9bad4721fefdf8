/**
 * `npm run bench:bulk [-- --duration=S] [--events=N] [--copy-rows=N] [--depth-only | --standing-only] [--cpu-prof] [--one-tenant]`
 * (--one-tenant: every client posts for the same tenant; by default each client is its own tenant)
 * (--cpu-prof: each service writes a .cpuprofile to bench/results/<run>/profile-<policy>-<clients>/)
 *
 * Bulk NDJSON ingest against psql `\copy` of the same rows, in one run. Each client posts
 * `--events`-event NDJSON requests (default 1000) back to back on one keep-alive connection for
 * `--duration` seconds and, like a real client, retries a 429/503 after its Retry-After. Figure:
 * events stored ÷ time from the first request to the last row committed (the service's
 * ingest_events_stored_total reaching what was acknowledged, polled every 10 ms). 1 and 4 clients,
 * under each admission policy (ADMISSION_POLICY=depth, the plain 80 %/60 % depth rule, and
 * ADMISSION_POLICY=standing, the default: see DESIGN.md "Admission and fairness"), side by side.
 * WAL mode (the default durability), AUTH=off, one tenant per client.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { copyRows, writeRowsFile } from './lib/copy-baseline.ts';
import { countRows, createModeDatabase } from './lib/database.ts';
import { SERVER_STOP_GRACE_MS, measureDatabase, perEvent, progress, type BenchOptions, type Context } from './lib/harness.ts';
import { parseBenchArgs } from './lib/options.ts';
import { machineBusyMs, processCpuMs, serverTreeCpuMs } from './lib/cpu.ts';
import { makeEvent } from './lib/event-body.ts';
import { sleep, stopChild } from './lib/processes.ts';
import { scrape, value } from './lib/prometheus.ts';
import { counts, fmt, runScenario, startIngestService, waitForDrain } from './lib/scenario.ts';

type Policy = 'depth' | 'standing';
const CLIENT_COUNTS = [1, 4] as const;
const BODIES_PER_CLIENT = 4;
const POLL_MS = 10;

interface ClientResult {
  readonly requests: number;
  readonly accepted: number;
  readonly status429: number;
  readonly status503: number;
  readonly other: number;
  readonly retryWaitMs: number;
}

interface BulkRun {
  readonly policy: Policy;
  readonly clients: number;
  readonly stored: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  readonly requests: number;
  readonly status429: number;
  readonly status503: number;
  readonly other: number;
  readonly retryWaitMs: number;
  readonly commitsPerEvent: number;
  readonly shed: string;
  /** CPU ms per 1000 stored events: the service, PostgreSQL, the whole machine. */
  readonly serviceCpuPer1000: number | undefined;
  readonly postgresCpuPer1000: number | undefined;
  readonly machineCpuPer1000: number | undefined;
}

function makeBodies(client: number, events: number): string[] {
  return Array.from({ length: BODIES_PER_CLIENT }, (_, b) => {
    const lines: string[] = [];
    for (let i = 0; i < events; i++) {
      const event = makeEvent((b * events + i) % 100_000);
      event.tenant = args['one-tenant'] ? 'bulk-tenant' : `bulk-tenant-${client}`;
      lines.push(JSON.stringify(event));
    }
    return `${lines.join('\n')}\n`;
  });
}

async function runClient(url: string, dispatcher: Agent, bodies: readonly string[], events: number, stopAtMs: number): Promise<ClientResult> {
  let requests = 0;
  let accepted = 0;
  let status429 = 0;
  let status503 = 0;
  let other = 0;
  let retryWaitMs = 0;
  let next = 0;
  while (performance.now() < stopAtMs) {
    const body = bodies[next % bodies.length]!;
    requests += 1;
    const response = await request(url, { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson' }, dispatcher });
    const text = await response.body.text();
    if (response.statusCode === 202) {
      const parsed = JSON.parse(text) as { accepted: unknown[] };
      accepted += parsed.accepted.length;
      next += 1;
      continue;
    }
    if (response.statusCode === 429 || response.statusCode === 503) {
      if (response.statusCode === 429) status429 += 1;
      else status503 += 1;
      const seconds = Number(response.headers['retry-after'] ?? 1);
      // A client told to retry after the run's end stops there (the run ends at stopAtMs).
      const waitMs = Math.min((Number.isFinite(seconds) ? seconds : 1) * 1000, Math.max(0, stopAtMs - performance.now()));
      retryWaitMs += waitMs;
      await sleep(waitMs);
      continue;
    }
    other += 1;
    progress(`unexpected ${response.statusCode}: ${text.slice(0, 200)}`);
    if (other > 10) break;
  }
  void events;
  return { requests, accepted, status429, status503, other, retryWaitMs };
}

async function runBulk(ctx: Context, policy: Policy, clients: number, events: number, durationSeconds: number): Promise<BulkRun> {
  const id = `${policy}-${clients}`;
  const db = await createModeDatabase(ctx.server, `bulk_${policy}_${clients}`);
  const name = `service-${id}`;
  const env = { ADMISSION_POLICY: policy };
  const profile = ctx.options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(ctx.runDir, `profile-${id}`)}`] : [];
  const server = await startIngestService(ctx, db, name, env, profile);
  const metricsUrl = `${server.baseUrl}/metrics`;
  const dispatcher = new Agent({ connections: clients, keepAliveTimeout: 30_000 });
  try {
    const bodySets = Array.from({ length: clients }, (_, c) => makeBodies(c, events));
    // A short warm-up (JIT, connections), not measured.
    await Promise.all(bodySets.map((bodies) => runClient(`${server.baseUrl}/events`, dispatcher, bodies, events, performance.now() + 1000)));
    const before = await waitForDrain(metricsUrl);
    const stored0 = value(before, 'ingest_events_stored_total');
    const cpu0 = { service: processCpuMs(server.child.process.pid), postgres: serverTreeCpuMs(ctx.server.postmasterPid), machine: machineBusyMs() };
    const { result, before: counters0, after: counters1 } = await measureDatabase(ctx, db, async () => {
      const started = performance.now();
      const stopAt = started + durationSeconds * 1000;
      const results = await Promise.all(bodySets.map((bodies) => runClient(`${server.baseUrl}/events`, dispatcher, bodies, events, stopAt)));
      const acknowledged = results.reduce((sum, r) => sum + r.accepted, 0);
      // The last row committed: poll the stored counter until it covers every acknowledged event.
      let stored = 0;
      for (;;) {
        stored = value(await scrape(metricsUrl), 'ingest_events_stored_total') - stored0;
        if (stored >= acknowledged) break;
        if (performance.now() - stopAt > 60_000) throw new Error(`${id}: ${acknowledged - stored} acknowledged events not stored after 60 s`);
        await sleep(POLL_MS);
      }
      const seconds = (performance.now() - started) / 1000;
      const cpu1 = { service: processCpuMs(server.child.process.pid), postgres: serverTreeCpuMs(ctx.server.postmasterPid), machine: machineBusyMs() };
      return { results, stored, seconds, cpu1 };
    });
    const per1000 = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : ((b - a) / result.stored) * 1000);
    const after = await waitForDrain(metricsUrl);
    const sum = (pick: (r: ClientResult) => number) => result.results.reduce((total, r) => total + pick(r), 0);
    const run: BulkRun = {
      policy,
      clients,
      stored: result.stored,
      seconds: result.seconds,
      eventsPerSecond: result.stored / result.seconds,
      requests: sum((r) => r.requests),
      status429: sum((r) => r.status429),
      status503: sum((r) => r.status503),
      other: sum((r) => r.other),
      retryWaitMs: sum((r) => r.retryWaitMs),
      commitsPerEvent: perEvent(ctx, counters0, counters1, result.stored, 0).commits,
      shed: counts(after, before, 'ingest_shed_total', 'reason'),
      serviceCpuPer1000: per1000(cpu0.service, result.cpu1.service),
      postgresCpuPer1000: per1000(cpu0.postgres, result.cpu1.postgres),
      machineCpuPer1000: per1000(cpu0.machine, result.cpu1.machine),
    };
    progress(`${id}: ${fmt(run.stored)} stored in ${run.seconds.toFixed(2)} s = ${fmt(run.eventsPerSecond)} ev/s; ${run.requests} requests, ${run.status429}×429, ${run.status503}×503`);
    return run;
  } finally {
    await dispatcher.close();
    await stopChild(server.child, SERVER_STOP_GRACE_MS);
  }
}

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { duration: { default: 6, min: 1, max: 120 }, events: { default: 1000, min: 1, max: 10_000 }, 'copy-rows': { default: 100_000, min: 1000, max: 2_000_000 } },
  flags: ['depth-only', 'standing-only', 'cpu-prof', 'one-tenant'],
});
const policies: Policy[] = args['depth-only'] ? ['depth'] : args['standing-only'] ? ['standing'] : ['depth', 'standing'];
const options: BenchOptions = { cpuProf: args['cpu-prof'], durationSeconds: args.duration, warmupSeconds: 1, connections: 4, rateConnections: 4, lowRate: 0 };

await runScenario('bulk', options, `bulk: ${args.events}-event NDJSON requests back to back per client, ${args.duration} s per run, retry 429/503 after Retry-After; WAL mode; ${args['one-tenant'] ? 'one tenant for all clients' : 'one tenant per client'}; policies ${policies.join(', ')}`, async (ctx) => {
  const copyDb = await createModeDatabase(ctx.server, 'bulk_copy');
  const file = path.join(ctx.runDir, 'rows.copy');
  await writeRowsFile(file, args['copy-rows']);
  const pg0 = serverTreeCpuMs(ctx.server.postmasterPid);
  const machine0 = machineBusyMs();
  const copy = await copyRows(copyDb.url, file, args['copy-rows'], true, 120_000);
  const pg1 = serverTreeCpuMs(ctx.server.postmasterPid);
  const machine1 = machineBusyMs();
  const copyPgPer1000 = pg0 === undefined || pg1 === undefined ? undefined : ((pg1 - pg0) / args['copy-rows']) * 1000;
  const copyMachinePer1000 = machine0 === undefined || machine1 === undefined ? undefined : ((machine1 - machine0) / args['copy-rows']) * 1000;
  await rm(file, { force: true });
  if ((await countRows(copyDb)) !== args['copy-rows']) throw new Error('psql \\copy stored the wrong number of rows');
  const copyRate = copy.rows / copy.seconds;
  progress(`psql \\copy: ${copy.rows} rows in ${copy.seconds.toFixed(2)} s = ${fmt(copyRate)} rows/s`);

  const runs: BulkRun[] = [];
  for (const policy of policies) for (const clients of CLIENT_COUNTS) runs.push(await runBulk(ctx, policy, clients, args.events, args.duration));

  const lines = [
    '## Bulk ingest',
    '',
    `psql \\copy of ${fmt(copy.rows)} rows of the same events: ${fmt(copyRate)} rows/s (${copy.seconds.toFixed(2)} s); PostgreSQL CPU ${fmt(copyPgPer1000)} ms / 1000 rows, machine ${fmt(copyMachinePer1000)} ms / 1000 rows (2 cores busy = 2000 ms/s).`,
    '',
    '| ADMISSION_POLICY | clients | events stored | s (first request → last commit) | events/s | × psql \\copy | requests | 429 | 503 | Retry-After waited (s) | commits/event | CPU ms / 1000 ev: service, PostgreSQL, machine | shed reasons |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
    ...runs.map(
      (r) =>
        `| ${r.policy} | ${r.clients} | ${fmt(r.stored)} | ${r.seconds.toFixed(2)} | ${fmt(r.eventsPerSecond)} | ${(r.eventsPerSecond / copyRate).toFixed(2)} | ${r.requests} | ${r.status429} | ${r.status503} | ${(r.retryWaitMs / 1000).toFixed(0)} | 1/${fmt(1 / r.commitsPerEvent)} | ${fmt(r.serviceCpuPer1000)}, ${fmt(r.postgresCpuPer1000)}, ${fmt(r.machineCpuPer1000)} | ${r.shed} |`,
    ),
    '',
    'Targets (issue 11): one client ≥ 0.3× and four clients ≥ 0.5× psql \\copy; zero 429/503 for one client; four clients never slower than one; commits/event ≤ 1/400.',
  ];
  return { markdown: lines.join('\n'), json: { copy, runs } };
});
