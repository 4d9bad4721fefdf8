/**
 * `node --import tsx bench/refusal-cost.ts <tenant> <single|bulk> <rate> <seconds> [cpu-prof-dir]`
 *
 * One probe of bench:noisy on its own, for a profile: the service (AUTH=on, DURABILITY=memory,
 * the machine's PostgreSQL at DATABASE_URL, a scratch database) with its CPU per request, idle
 * CPU subtracted. <tenant>: probe-accept (limit lifted), probe-refuse (1 event/s) or bulk-refuse
 * (1 event/s, burst 100). With a directory, the service runs under `node --cpu-prof` and the
 * printed windowUs are the --from-us/--to-us of bench/summarise-profile.ts for the measured part.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ApiKeyStore } from '../src/auth/api-key-store.ts';
import { TenantLimitStore } from '../src/limits/tenant-limit-store.ts';
import { processCpuMs } from './lib/cpu.ts';
import { makeEvent } from './lib/event-body.ts';
import { runPaced } from './lib/paced.ts';
import { freePort, killAll, sleep, spawnChild, stopChild, waitUntilHealthy } from './lib/processes.ts';

const [tenant = 'probe-refuse', kind = 'single', rateArg = '600', secondsArg = '15', profileDir] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const databaseName = `bench_refusal_${process.pid}`;
const databaseUrl = (() => {
  const url = new URL(adminUrl);
  url.pathname = `/${databaseName}`;
  return url.toString();
})();
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${databaseName}`);
const dataDir = mkdtempSync(path.join(tmpdir(), 'bench-refusal-'));
const port = await freePort();
const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
const server = spawnChild(process.execPath, [...profile, '--import', 'tsx', 'src/server.ts'], {
  logFile: path.join(dataDir, 'server.log'),
  env: {
    ...process.env,
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    METRICS_PORT: String(await freePort()),
    DATA_DIR: dataDir,
    AUTH: 'on',
    DURABILITY: 'memory',
    LOG_LEVEL: 'warn',
    TENANT_RATE_LIMIT: '100',
    TENANT_RATE_BURST: '100',
    TENANT_LIMITS_POLL_MS: '500',
  },
});
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
try {
  await waitUntilHealthy(`http://127.0.0.1:${port}/healthz`, server, 60_000);
  const key = (await new ApiKeyStore(pool).create(tenant)).key;
  const limits = new TenantLimitStore(pool);
  if (tenant === 'probe-accept') await limits.set({ tenant, rate: 1_000_000, burst: 1_000_000, byteRate: null, byteBurst: null });
  if (tenant === 'probe-refuse') await limits.set({ tenant, rate: 1, burst: 1, byteRate: null, byteBurst: null });
  if (tenant === 'bulk-refuse') await limits.set({ tenant, rate: 1, burst: 100, byteRate: null, byteBurst: null });
  await sleep(1500);
  const bulk = kind === 'bulk';
  const bodies = bulk
    ? Array.from({ length: 50 }, (_, b) => JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ ...makeEvent(b * 100 + i), tenant }))))
    : Array.from({ length: 2000 }, (_, i) => JSON.stringify({ ...makeEvent(i), tenant }));
  const options = { url: `http://127.0.0.1:${port}/${bulk ? 'events' : 'event'}`, ratePerSecond: rate, warmupSeconds: 0, connections: 8, bodies, timeoutMs: 10_000, headers: { Authorization: `Bearer ${key}` } };
  await runPaced({ ...options, durationSeconds: 3 }); // the JIT's warm-up, not measured
  const idleBefore = processCpuMs(server.process.pid)!;
  await sleep(5000);
  const idlePerSecond = (processCpuMs(server.process.pid)! - idleBefore) / 5;
  const before = processCpuMs(server.process.pid)!;
  const startedUs = process.hrtime.bigint() / 1000n;
  const result = await runPaced({ ...options, durationSeconds: seconds });
  const endedUs = process.hrtime.bigint() / 1000n;
  const cpuMs = processCpuMs(server.process.pid)! - before;
  const elapsedSeconds = Number(endedUs - startedUs) / 1e6;
  process.stdout.write(
    `${JSON.stringify({ tenant, kind, rate, sent: result.sent, codes: result.statusCodes, errors: result.errors, idleCpuMsPerSecond: idlePerSecond, cpuMsPerRequest: (cpuMs - idlePerSecond * elapsedSeconds) / result.sent, windowUs: [Number(startedUs), Number(endedUs)] })}\n`,
  );
} finally {
  await stopChild(server, 10_000).catch(() => null);
  killAll();
  await pool.end();
  await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`).catch(() => {});
  await admin.end();
  rmSync(dataDir, { recursive: true, force: true });
}
