/**
 * `npm run bench:client`: what @audit-ingest/client costs against a hand-written sender. The real
 * service as a child process (WAL mode, AUTH=off) on an embedded PostgreSQL; each round sends N
 * events (default 50 000; N=… to change) twice, in 500-event gzip NDJSON requests, two in flight:
 *  - raw: fetch loops building the bodies themselves (UUIDv7 ids, JSON.stringify, gzip);
 *  - client: AuditClient.record() per event (whenFull 'wait', capacity 5000), awaiting every result.
 * Prints acknowledged events/s and the sender's CPU per event (process.cpuUsage) for both.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { gzip as gz } from 'node:zlib';
import { pino } from 'pino';
import { v7 } from 'uuid';
import { AuditClient } from '@audit-ingest/client';
import { startEmbeddedPostgres } from '../src/db/embedded-postgres.ts';
import { startServerProcess } from '../test/helpers/server-process.ts';

const gzip = promisify(gz);
const scratch = await mkdtemp(path.join(tmpdir(), 'sdk-bench-'));
const pg = await startEmbeddedPostgres({ dataDir: path.join(scratch, 'pg'), logger: pino({ level: 'warn' }), ephemeral: true });
const server = await startServerProcess({ DATABASE_URL: pg.url, DATA_DIR: path.join(scratch, 'data') });
const N = Number(process.env.N ?? 50000);
const event = (i: number, tenant: string) => ({ tenant, occurred_at: '2026-12-03T05:00:00.000Z', action: 'bench', actor: { id: `user:${i}`, type: 'user' }, metadata: { i } });

async function viaClient(round: number): Promise<number> {
  const client = new AuditClient({ url: server.origin, maxBatchSize: 500, concurrency: 2, capacity: 5000, whenFull: 'wait' });
  const start = performance.now();
  const results = [];
  for (let i = 0; i < N; i += 1) {
    results.push(client.record(event(i, `c${round}`)));
    if (i % 500 === 499) await new Promise<void>((r) => setImmediate(r));
  }
  const settled = await Promise.all(results);
  const ms = performance.now() - start;
  await client.close();
  if (settled.some((r) => r.status !== 'accepted')) throw new Error('not all accepted');
  return (N / ms) * 1000;
}

async function viaRaw(round: number): Promise<number> {
  const start = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < N) {
      const from = next;
      next = Math.min(N, next + 500);
      let body = '';
      for (let i = from; i < next; i += 1) body += `${JSON.stringify({ id: v7(), ...event(i, `r${round}`) })}\n`;
      const response = await fetch(`${server.origin}/events`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' }, body: await gzip(body) });
      await response.text();
      if (response.status !== 202) throw new Error(`status ${response.status}`);
    }
  };
  await Promise.all([worker(), worker()]);
  return (N / (performance.now() - start)) * 1000;
}

try {
  for (let round = 0; round < Number(process.env.ROUNDS ?? 3); round += 1) {
    let cpu = process.cpuUsage();
    const raw = await viaRaw(round);
    const rawCpu = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    const client = await viaClient(round);
    const clientCpu = process.cpuUsage(cpu);
    const us = (u: NodeJS.CpuUsage) => (((u.user + u.system) / N)).toFixed(1);
    console.log(`round ${round}: raw fetch ${raw.toFixed(0)} ev/s (${us(rawCpu)} us CPU/event in the sender), AuditClient ${client.toFixed(0)} ev/s (${us(clientCpu)} us), ratio ${(client / raw).toFixed(2)}`);
  }
} finally {
  server.child.kill('SIGTERM');
  await server.exited;
  await pg.stop();
  await rm(scratch, { recursive: true, force: true });
}
