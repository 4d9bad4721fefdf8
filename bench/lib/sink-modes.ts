/**
 * A feature's cost to the COPY sink per batch, for bench/rollup-cost.ts and bench/audit-chain.ts:
 * PostgresCopySink written to directly (no HTTP, no batcher), in four modes on one PostgreSQL
 * (embedded, fsync on; or DATABASE_URL), each on a fresh migrated database of its own:
 *  - `off` / `on`: batches without stored keys — the plain COPY, without / with the feature;
 *  - `off-staged` / `on-staged`: each batch holding one stored id — the staged way (COPY into the
 *    temp table, INSERT … ON CONFLICT DO NOTHING), without / with the feature.
 * For each batch size and number of writers at once, the modes take turns in rounds (the first
 * mode rotates), so drift hits them alike. After the run the feature's own check reads each `on`
 * database; then one Markdown table is printed.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { encodeEventRow } from '../../src/event/copy-row.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { auditEventSchema } from '../../src/event/schema.ts';
import type { PostgresCopySink } from '../../src/sink/postgres-copy-sink.ts';
import { serverTreeCpuMs } from './cpu.ts';
import { createModeDatabase, startBenchServer } from './database.ts';
import { describeMachine } from './machine.ts';

export type SinkMode = 'off' | 'off-staged' | 'on' | 'on-staged';
const MODES: readonly SinkMode[] = ['off', 'off-staged', 'on', 'on-staged'];
const staged = (mode: SinkMode) => mode.endsWith('-staged');
const signal = new AbortController().signal;
const MINUTE_MS = 60_000;

export interface SinkModesOptions {
  /** The table's heading, after "## ". */
  readonly title: string;
  readonly sizes: readonly number[];
  readonly writers: readonly number[];
  readonly rounds: number;
  readonly batches: number;
  /** Events are spread round robin over `tenant-0` … `tenant-${tenants - 1}`. */
  readonly tenants: number;
  /** The sink of a mode: the feature on for `on` and `on-staged`. */
  readonly sinkFor: (mode: SinkMode, pool: pg.Pool) => PostgresCopySink;
  /** Reads an `on` database after the run: a line for the report each (a broken feature would say so). */
  readonly check: (mode: 'on' | 'on-staged', pool: pg.Pool) => Promise<string[]>;
  /** What the check lines are called in the report ("Verified after the run", …). */
  readonly checkLabel: string;
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

/** Events over `tenants` tenants × 10 actions, 3 minutes of occurred_at. */
function eventMaker(tenants: number): () => QueuedEvent {
  const baseMs = Math.floor(Date.now() / MINUTE_MS) * MINUTE_MS;
  let sequence = 0;
  return () => {
    sequence += 1;
    const id = randomUUID();
    const parsed = auditEventSchema.parse({
      tenant: `tenant-${sequence % tenants}`,
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
  };
}

export async function runSinkModes(options: SinkModesOptions): Promise<void> {
  const event = eventMaker(options.tenants);
  const server = await startBenchServer();
  const machine = describeMachine();
  const results = new Map<string, Segment>();
  try {
    const setups = new Map<SinkMode, { pool: pg.Pool; sink: PostgresCopySink; stored: QueuedEvent[] }>();
    for (const mode of MODES) {
      const db = await createModeDatabase(server, mode.replace('-', '_'));
      const pool = new pg.Pool({ connectionString: db.url, max: 2 });
      pool.on('error', () => {}); // an idle connection ended by the server's stop at the end
      const sink = options.sinkFor(mode, pool);
      // *-staged: events stored beforehand, one of which each batch carries again — the same row, so the
      // same (tenant, id, occurred_at) key (a retry resends its occurred_at; a new one would be a new event).
      const stored = staged(mode) ? Array.from({ length: 2000 }, () => event()) : [];
      if (stored.length > 0) await sink.write(stored, { signal });
      setups.set(mode, { pool, sink, stored });
    }
    let storedAt = 0; // one counter for both staged modes: each still takes a different stored id per batch
    const batchOf = (mode: SinkMode, size: number): QueuedEvent[] => {
      const batch = Array.from({ length: size }, () => event());
      if (staged(mode)) {
        const setup = setups.get(mode)!;
        batch[0] = setup.stored[storedAt++ % setup.stored.length]!;
      }
      return batch;
    };

    for (const size of options.sizes) {
      for (const writers of options.writers) {
        process.stderr.write(`batch ${size}, ${writers} writer(s)\n`);
        for (let round = 0; round < options.rounds; round += 1) {
          for (let turn = 0; turn < MODES.length; turn += 1) {
            const mode = MODES[(round + turn) % MODES.length]!;
            const { sink } = setups.get(mode)!;
            const batches = Array.from({ length: options.batches }, () => batchOf(mode, size));
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

    const checked: string[] = [];
    for (const mode of ['on', 'on-staged'] as const) checked.push(...(await options.check(mode, setups.get(mode)!.pool)));
    for (const { pool } of setups.values()) await pool.end();

    const fmt = (n: number, digits = 1) => n.toFixed(digits);
    const lines = [
      '| batch | writers | mode | batches | ms per batch p50 / p99 | events/s | PostgreSQL CPU µs/event | client CPU µs/event | p50 vs off | events/s vs off | PG CPU vs off |',
      '| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const size of options.sizes) {
      for (const writers of options.writers) {
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
        `## ${options.title}`,
        '',
        ...lines,
        '',
        `${options.checkLabel}: ${checked.join('; ')}.`,
        `PostgreSQL ${server.settings.version}${server.embedded ? ' (embedded)' : ''}, fsync=${server.settings.fsync}, synchronous_commit=${server.settings.synchronousCommit}; ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, load average at the end ${machine.loadAverage}.`,
        '',
      ].join('\n'),
    );
  } finally {
    await server.stop();
  }
}
