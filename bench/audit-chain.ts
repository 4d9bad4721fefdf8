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
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { verifyChain } from '../src/audit/verify.ts';
import { encodeEventRow } from '../src/event/copy-row.ts';
import type { QueuedEvent } from '../src/event/queued-event.ts';
import { auditEventSchema } from '../src/event/schema.ts';
import { PostgresCopySink } from '../src/sink/postgres-copy-sink.ts';
import { serverTreeCpuMs } from './lib/cpu.ts';
import { createModeDatabase, startBenchServer } from './lib/database.ts';
import { describeMachine } from './lib/machine.ts';
import { parseBenchArgs } from './lib/options.ts';

type Mode = 'off' | 'off-staged' | 'on' | 'on-staged';
const MODES: readonly Mode[] = ['off', 'off-staged', 'on', 'on-staged'];
const staged = (mode: Mode) => mode.endsWith('-staged');
const BATCH_SIZES = [500] as const;
const WRITERS = [1, 2] as const;
const TENANTS = 5;
const signal = new AbortController().signal;

const args = parseBenchArgs(process.argv.slice(2), {
  numeric: { rounds: { default: 6, min: 1, max: 100 }, batches: { default: 20, min: 2, max: 1000 } },
});

const MINUTE_MS = 60_000;
const baseMs = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS;
let sequence = 0;
function event(id: string = randomUUID()): QueuedEvent {
  sequence += 1;
  const parsed = auditEventSchema.parse({
    tenant: `tenant-${sequence % TENANTS}`,
    occurred_at: new Date(baseMs + ((sequence * 7919) % (3 * MINUTE_MS))).toISOString(),
    action: `resource.action-${Math.floor(sequence / 5) % 10}`,
    actor: { id: `user:${sequence % 1000}`, type: 'user', name: 'Ada' },
    target: { id: 'doc:9', type: 'document', name: 'Q3 plan' },
    outcome: 'success',
    source_ip: '203.0.113.7',
    user_agent: 'billing-service/2.3',
    metadata: { request_id: `r-${sequence}` },
  });
  const row = encodeEventRow(parsed, id, new Date().toISOString());
  return { id, tenant: parsed.tenant, row, bytes: Buffer.byteLength(row) };
}

interface Segment {
  readonly batchMs: number[];
  wallMs: number;
  serverCpuMs: number;
  clientCpuMs: number;
  events: number;
}

const emptySegment = (): Segment => ({ batchMs: [], wallMs: 0, serverCpuMs: 0, clientCpuMs: 0, events: 0 });

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const server = await startBenchServer();
const machine = describeMachine();
const results = new Map<string, Segment>();
try {
  const setups = new Map<Mode, { pool: pg.Pool; sink: PostgresCopySink; stored: QueuedEvent[] }>();
  for (const mode of MODES) {
    const db = await createModeDatabase(server, mode.replace('-', '_'));
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    pool.on('error', () => {}); // an idle connection ended by the server's stop at the end
    const sink = new PostgresCopySink(pool, { copyTimeoutMs: 30_000, auditChain: mode.startsWith('on') ? {} : undefined });
    // *-staged: events stored beforehand, one of which each batch carries again — the same row, so the
    // same (tenant, id, occurred_at) key (a retry resends its occurred_at; a new one would be a new event).
    const stored = staged(mode) ? Array.from({ length: 2000 }, () => event()) : [];
    if (stored.length > 0) await sink.write(stored, { signal });
    setups.set(mode, { pool, sink, stored });
  }
  let storedAt = 0; // one counter for both staged modes: each still takes a different stored id per batch
  const batchOf = (mode: Mode, size: number): QueuedEvent[] => {
    const batch = Array.from({ length: size }, () => event());
    if (staged(mode)) {
      const setup = setups.get(mode)!;
      batch[0] = setup.stored[storedAt++ % setup.stored.length]!;
    }
    return batch;
  };

  for (const size of BATCH_SIZES) {
    for (const writers of WRITERS) {
      process.stderr.write(`batch ${size}, ${writers} writer(s)\n`);
      for (let round = 0; round < args.rounds; round += 1) {
        for (let turn = 0; turn < MODES.length; turn += 1) {
          const mode = MODES[(round + turn) % MODES.length]!;
          const { sink } = setups.get(mode)!;
          const batches = Array.from({ length: args.batches }, () => batchOf(mode, size));
          const key = `${mode}|${size}|${writers}`;
          const segment = results.get(key) ?? emptySegment();
          results.set(key, segment);
          const serverBefore = serverTreeCpuMs(server.postmasterPid) ?? 0;
          const clientBefore = process.cpuUsage();
          const startedAt = performance.now();
          let next = 0;
          await Promise.all(
            Array.from({ length: writers }, async () => {
              while (next < batches.length) {
                const batch = batches[next++]!;
                const at = performance.now();
                await sink.write(batch, { signal });
                segment.batchMs.push(performance.now() - at);
              }
            }),
          );
          segment.wallMs += performance.now() - startedAt;
          const client = process.cpuUsage(clientBefore);
          segment.clientCpuMs += (client.user + client.system) / 1000;
          segment.serverCpuMs += (serverTreeCpuMs(server.postmasterPid) ?? 0) - serverBefore;
          segment.events += batches.length * size;
        }
      }
    }
  }

  // Each chained database verified once (a bench that broke the chain would say so).
  const identity: string[] = [];
  for (const mode of ['on', 'on-staged'] as const) {
    const pool = setups.get(mode)!.pool;
    for (let t = 0; t < TENANTS; t += 1) {
      const report = await verifyChain(pool, { tenant: `tenant-${t}` });
      if (!report.ok || t === 0) identity.push(`${mode} tenant-${t}: ${report.ok ? `intact, ${report.links} links, ${report.events} events` : `BROKEN: ${report.finding?.message}`}`);
    }
  }
  for (const { pool } of setups.values()) await pool.end();

  const fmt = (n: number, digits = 1) => n.toFixed(digits);
  const lines = [
    '| batch | writers | mode | batches | ms per batch p50 / p99 | events/s | PostgreSQL CPU µs/event | client CPU µs/event | p50 vs off | events/s vs off | PG CPU vs off |',
    '| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const size of BATCH_SIZES) {
    for (const writers of WRITERS) {
      const base = results.get(`off|${size}|${writers}`)!;
      for (const mode of MODES) {
        const s = results.get(`${mode}|${size}|${writers}`)!;
        const rate = (segment: Segment) => (segment.events * 1000) / segment.wallMs;
        const serverPer = (segment: Segment) => (segment.serverCpuMs * 1000) / segment.events;
        lines.push(
          `| ${size} | ${writers} | ${mode} | ${s.batchMs.length} | ${fmt(percentile(s.batchMs, 50), 2)} / ${fmt(percentile(s.batchMs, 99), 2)} | ${fmt(rate(s), 0)} | ${fmt(serverPer(s))} | ${fmt((s.clientCpuMs * 1000) / s.events)} | ${fmt(percentile(s.batchMs, 50) / percentile(base.batchMs, 50), 2)}× | ${fmt(rate(s) / rate(base), 2)}× | ${fmt(serverPer(s) / serverPer(base), 2)}× |`,
        );
      }
    }
  }
  process.stdout.write(
    [
      `## Audit chain cost per batch (bench/audit-chain.ts, ${args.rounds} rounds × ${args.batches} batches per mode and row, ${TENANTS} tenants per batch)`,
      '',
      ...lines,
      '',
      `Verified after the run: ${identity.join('; ')}.`,
      `PostgreSQL ${server.settings.version}${server.embedded ? ' (embedded)' : ''}, fsync=${server.settings.fsync}, synchronous_commit=${server.settings.synchronousCommit}; ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load average at the end ${machine.loadAverage}.`,
      '',
    ].join('\n'),
  );
} finally {
  await server.stop();
}
