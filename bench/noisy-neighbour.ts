/**
 * `npm run bench:noisy [-- --duration=S]` (default 15 s a phase; the whole run takes about 4 min).
 *
 * Per-tenant rate limits (TENANT_RATE_LIMIT) against a noisy neighbour, on one service process
 * (AUTH=on, a key per tenant) and the machine's PostgreSQL (DATABASE_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped):
 *  1. two quiet tenants at QUIET_RATE each, alone: their p99;
 *  2. the same two plus a noisy tenant at 10× its limit: the quiet tenants' p99 again (ratio to 1)
 *     and what the noisy one was answered;
 *  3. CPU per request of the service process (its idle CPU over the same time subtracted): a tenant accepted at PROBE_RATE (its override lifts
 *     its limit) against a tenant refused at PROBE_RATE (override: 1 event/s), same bodies;
 *  4. the same for bulks of BULK_EVENTS events at BULK_PROBE_RATE requests/s (the refused tenant:
 *     1 event/s, burst BULK_EVENTS, so all but about one bulk in BULK_EVENTS seconds are refused
 *     at the gate), and a single event refused at that request rate (per-request costs at 20/s
 *     are not those at 600/s: each request wakes an idle process);
 *  5. the floors: the same single and bulk requests against bare Fastify refusing every request in
 *     onRequest with a precomputed 429 (bench/servers/bare-refuse.ts), and against node:http with
 *     no framework doing the same (bench/servers/raw-refuse.ts).
 * Open-loop generator (bench/lib/paced.ts) in this process. Prints a Markdown table.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ApiKeyStore } from '../src/auth/api-key-store.ts';
import { TenantLimitStore } from '../src/limits/tenant-limit-store.ts';
import { processCpuMs } from './lib/cpu.ts';
import { makeEvent } from './lib/event-body.ts';
import { describeMachine } from './lib/machine.ts';
import { percentile, runPaced, type PacedResult } from './lib/paced.ts';
import { freePort, killAll, sleep, spawnChild, stopChild, waitUntilHealthy } from './lib/processes.ts';

const durationArg = process.argv.find((arg) => arg.startsWith('--duration='));
const DURATION_S = durationArg ? Number(durationArg.split('=')[1]) : 15;
const WARMUP_S = 3;
const LIMIT = 100; // events/s per tenant (TENANT_RATE_LIMIT = TENANT_RATE_BURST)
const QUIET_RATE = 50;
const NOISY_RATE = 10 * LIMIT;
const PROBE_RATE = 600;
const POLL_MS = 500;
const BULK_EVENTS = 100;
const BULK_PROBE_RATE = 20;

const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const databaseName = `bench_noisy_${process.pid}`;
const databaseUrl = (() => {
  const url = new URL(adminUrl);
  url.pathname = `/${databaseName}`;
  return url.toString();
})();

const bodiesFor = (tenant: string) => Array.from({ length: 2000 }, (_, i) => JSON.stringify({ ...makeEvent(i), tenant }));
const bulkBodiesFor = (tenant: string) =>
  Array.from({ length: 50 }, (_, b) => JSON.stringify(Array.from({ length: BULK_EVENTS }, (_, i) => ({ ...makeEvent(b * BULK_EVENTS + i), tenant }))));
const p99 = (result: PacedResult) => percentile(result.latenciesMs.slice().sort(), 0.99);
const fmt = (value: number, digits = 2) => value.toFixed(digits);
const codes = (result: PacedResult) =>
  Object.entries(result.statusCodes)
    .map(([code, count]) => `${code}×${count}`)
    .join(' ');

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${databaseName}`);
const dataDir = mkdtempSync(path.join(tmpdir(), 'bench-noisy-'));
const port = await freePort();
const metricsPort = await freePort();
const server = spawnChild(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
  logFile: path.join(dataDir, 'server.log'),
  env: {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    METRICS_PORT: String(metricsPort),
    DATA_DIR: dataDir,
    AUTH: 'on',
    // Acknowledged from memory: the figures are the edge's (CPU, the gate), not the disk's fsync
    // latency, which on a shared VM disk swamps a p99 comparison.
    DURABILITY: 'memory',
    LOG_LEVEL: 'warn',
    TENANT_RATE_LIMIT: String(LIMIT),
    TENANT_RATE_BURST: String(LIMIT),
    TENANT_LIMITS_POLL_MS: String(POLL_MS),
  },
});
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
try {
  await waitUntilHealthy(`http://127.0.0.1:${port}/healthz`, server, 60_000);
  const keys = new ApiKeyStore(pool);
  const keyOf = async (tenant: string) => (await keys.create(tenant)).key;
  const tenants = ['quiet-a', 'quiet-b', 'noisy', 'probe-accept', 'probe-refuse', 'bulk-refuse'];
  const key = Object.fromEntries(await Promise.all(tenants.map(async (tenant) => [tenant, await keyOf(tenant)] as const)));
  const limits = new TenantLimitStore(pool);
  await limits.set({ tenant: 'probe-accept', rate: 1_000_000, burst: 1_000_000, byteRate: null, byteBurst: null });
  await limits.set({ tenant: 'probe-refuse', rate: 1, burst: 1, byteRate: null, byteBurst: null });
  await limits.set({ tenant: 'bulk-refuse', rate: 1, burst: BULK_EVENTS, byteRate: null, byteBurst: null });
  await sleep(POLL_MS * 3);

  const url = `http://127.0.0.1:${port}/event`;
  const stream = (tenant: string, rate: number) =>
    runPaced({ url, ratePerSecond: rate, durationSeconds: DURATION_S, warmupSeconds: WARMUP_S, connections: 8, bodies: bodiesFor(tenant), timeoutMs: 10_000, headers: { Authorization: `Bearer ${key[tenant]}` } });

  process.stderr.write('phase 1: quiet tenants alone\n');
  const alone = await Promise.all([stream('quiet-a', QUIET_RATE), stream('quiet-b', QUIET_RATE)]);
  process.stderr.write('phase 2: quiet tenants + noisy at 10x its limit\n');
  const [noisy, ...withNoisy] = await Promise.all([stream('noisy', NOISY_RATE), stream('quiet-a', QUIET_RATE), stream('quiet-b', QUIET_RATE)]);

  // A process's own background CPU (timers, the override poll, GC) per second, idle: subtracted
  // from each probe so that low request rates are not charged for it.
  const idleCpuPerSecond = async (pid: number) => {
    const before = processCpuMs(pid)!;
    await sleep(DURATION_S * 1000);
    return (processCpuMs(pid)! - before) / DURATION_S;
  };
  const idleCpuMsPerSecond = await idleCpuPerSecond(server.process.pid!);
  const cpuPerRequest = async (tenant: string, bulk = false, target = { pid: server.process.pid!, port, idle: idleCpuMsPerSecond }, rate = bulk ? BULK_PROBE_RATE : PROBE_RATE) => {
    const before = processCpuMs(target.pid)!;
    const result = await runPaced({
      url: `http://127.0.0.1:${target.port}/${bulk ? 'events' : 'event'}`,
      ratePerSecond: rate,
      durationSeconds: DURATION_S,
      warmupSeconds: 0,
      connections: 8,
      bodies: bulk ? bulkBodiesFor(tenant) : bodiesFor(tenant),
      timeoutMs: 10_000,
      headers: { Authorization: `Bearer ${key[tenant]}` },
    });
    const cpuMs = processCpuMs(target.pid)! - before - target.idle * DURATION_S;
    return { result, cpuMsPerRequest: cpuMs / result.sent };
  };
  process.stderr.write('phase 3: CPU per accepted request\n');
  const accepting = await cpuPerRequest('probe-accept');
  process.stderr.write('phase 3: CPU per refused request\n');
  const refusing = await cpuPerRequest('probe-refuse');
  process.stderr.write('phase 4: CPU per accepted and refused bulk\n');
  const acceptingBulk = await cpuPerRequest('probe-accept', true);
  const refusingBulk = await cpuPerRequest('bulk-refuse', true);
  // A single event refused at the bulks' request rate: what a request costs at 20/s, where every
  // request wakes an idle process (compare the bulk with this, not with the 600/s figure).
  const refusingSlow = await cpuPerRequest('probe-refuse', false, undefined, BULK_PROBE_RATE);

  // Phase 5, the floors: bare Fastify refusing every request in onRequest with a precomputed 429
  // (bench/servers/bare-refuse.ts), and node:http doing the same with no framework
  // (bench/servers/raw-refuse.ts), the same requests at the same rates.
  const floor = async (script: string) => {
    const floorPort = await freePort();
    const child = spawnChild(process.execPath, ['--import', 'tsx', script], {
      logFile: path.join(dataDir, `${path.basename(script, '.ts')}.log`),
      env: { ...process.env, PORT: String(floorPort), HOST: '127.0.0.1' },
    });
    try {
      await waitUntilHealthy(`http://127.0.0.1:${floorPort}/healthz`, child, 60_000);
      const target = { pid: child.process.pid!, port: floorPort, idle: await idleCpuPerSecond(child.process.pid!) };
      await cpuPerRequest('probe-refuse', false, target); // its warm-up (the JIT), not reported
      return { single: await cpuPerRequest('probe-refuse', false, target), bulk: await cpuPerRequest('bulk-refuse', true, target) };
    } finally {
      await stopChild(child, 5_000).catch(() => null);
    }
  };
  process.stderr.write('phase 5: the floors, bare Fastify refusing in onRequest and node:http refusing\n');
  const { single: bareSingle, bulk: bareBulk } = await floor('bench/servers/bare-refuse.ts');
  const { single: rawSingle, bulk: rawBulk } = await floor('bench/servers/raw-refuse.ts');

  const machine = describeMachine();
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; PostgreSQL at DATABASE_URL; DURABILITY=memory; ${DURATION_S} s a phase (${WARMUP_S} s warm-up), TENANT_RATE_LIMIT=${LIMIT}=TENANT_RATE_BURST; idle service CPU ${fmt(idleCpuMsPerSecond)} ms/s, subtracted from the CPU figures.`);
  out('');
  out('| run | quiet-a p99 ms | quiet-b p99 ms | ratio to alone (a / b) | answers |');
  out('|---|---|---|---|---|');
  out(`| quiet tenants alone (${QUIET_RATE}/s each) | ${fmt(p99(alone[0]))} | ${fmt(p99(alone[1]))} | 1 / 1 | ${codes(alone[0])}; ${codes(alone[1])} |`);
  out(
    `| + noisy at ${NOISY_RATE}/s (10× its limit) | ${fmt(p99(withNoisy[0]))} | ${fmt(p99(withNoisy[1]))} | ${fmt(p99(withNoisy[0]) / p99(alone[0]))} / ${fmt(p99(withNoisy[1]) / p99(alone[1]))} | quiet: ${codes(withNoisy[0])}; ${codes(withNoisy[1])}; noisy: ${codes(noisy)} |`,
  );
  out('');
  out('| request | service CPU ms per request | answers |');
  out('|---|---|---|');
  out(`| accepted (202) | ${fmt(accepting.cpuMsPerRequest, 3)} | ${codes(accepting.result)} |`);
  out(`| refused at the gate (429) | ${fmt(refusing.cpuMsPerRequest, 3)} | ${codes(refusing.result)} |`);
  out(`| ratio refused / accepted | ${fmt(refusing.cpuMsPerRequest / accepting.cpuMsPerRequest)} | |`);
  out(`| bulk of ${BULK_EVENTS} accepted (202) | ${fmt(acceptingBulk.cpuMsPerRequest, 3)} | ${codes(acceptingBulk.result)} |`);
  out(`| bulk of ${BULK_EVENTS} refused (429) | ${fmt(refusingBulk.cpuMsPerRequest, 3)} | ${codes(refusingBulk.result)} |`);
  out(`| ratio refused / accepted (bulk) | ${fmt(refusingBulk.cpuMsPerRequest / acceptingBulk.cpuMsPerRequest)} | |`);
  out(`| refused single (429) at ${BULK_PROBE_RATE}/s, the bulks' rate | ${fmt(refusingSlow.cpuMsPerRequest, 3)} | ${codes(refusingSlow.result)} |`);
  out(`| per event: bulk refused / ${BULK_EVENTS} single events accepted | ${fmt(refusingBulk.cpuMsPerRequest / (BULK_EVENTS * accepting.cpuMsPerRequest), 3)} | |`);
  out(`| floor: bare Fastify refusing in onRequest, single | ${fmt(bareSingle.cpuMsPerRequest, 3)} (${fmt(bareSingle.cpuMsPerRequest / accepting.cpuMsPerRequest)} of accepted) | ${codes(bareSingle.result)} |`);
  out(`| floor: bare Fastify refusing in onRequest, bulk | ${fmt(bareBulk.cpuMsPerRequest, 3)} (${fmt(bareBulk.cpuMsPerRequest / acceptingBulk.cpuMsPerRequest)} of accepted) | ${codes(bareBulk.result)} |`);
  out(`| floor: node:http refusing, no framework, single | ${fmt(rawSingle.cpuMsPerRequest, 3)} (${fmt(rawSingle.cpuMsPerRequest / accepting.cpuMsPerRequest)} of accepted) | ${codes(rawSingle.result)} |`);
  out(`| floor: node:http refusing, no framework, bulk | ${fmt(rawBulk.cpuMsPerRequest, 3)} (${fmt(rawBulk.cpuMsPerRequest / acceptingBulk.cpuMsPerRequest)} of accepted) | ${codes(rawBulk.result)} |`);
  out('');
  out(`Generator send lag p99: ${fmt(Math.max(...[...alone, ...withNoisy, noisy].map((r) => r.sendLagP99Ms)))} ms.`);
} finally {
  await stopChild(server, 10_000).catch(() => null);
  killAll();
  await pool.end();
  await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).catch(() => {});
  await admin.end();
  rmSync(dataDir, { recursive: true, force: true });
}
