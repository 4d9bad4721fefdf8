/**
 * `npm run bench:forward [-- --seconds=2 --rtts=0,50,100,200 --batches=50,500,2000 --concurrency=1,4]`
 * (run it under `flock -o /tmp/bench.lock`; about 2 minutes with the defaults; DATABASE_URL or an
 * embedded PostgreSQL for central).
 *
 * Seed bonus 9: forwarding between regions (SINK=http). A real central instance (src/server.ts,
 * SINK=postgres, WAL on, ACK_MODE=queued: its 202 means "in central's write-ahead log") runs in a
 * child process behind a delaying TCP proxy that adds 0/50/100/200 ms of round-trip time. The
 * edge's own HttpForwardSink (gzip NDJSON over an undici Pool) sends batches of 50/500/2000 events
 * with 1 or 4 in flight (FLUSH_CONCURRENCY) for `--seconds` per cell; events/s counts events central
 * acknowledged. Central drains into PostgreSQL between cells, and must hold every acknowledged
 * event once at the end. Then the bytes one event costs on the wire (requests, headers included,
 * as the proxy counted them) with and without gzip.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { encodeEventRow } from '../src/event/copy-row.ts';
import type { QueuedEvent } from '../src/event/queued-event.ts';
import { auditEventSchema } from '../src/event/schema.ts';
import { ForwardClient } from '../src/forward/forward-client.ts';
import { HttpForwardSink } from '../src/sink/http-forward-sink.ts';
import { countRows, createModeDatabase, startBenchServer } from './lib/database.ts';
import { DelayingProxy } from './lib/delaying-proxy.ts';
import { describeMachine } from './lib/machine.ts';
import { exitOnSignal, freePort, killAll, sleep, spawnChild, stopChild, waitUntilHealthy } from './lib/processes.ts';
import { scrape, value } from './lib/prometheus.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    rtts: { type: 'string', default: '0,50,100,200' },
    batches: { type: 'string', default: '50,500,2000' },
    concurrency: { type: 'string', default: '1,4' },
  },
});
const SECONDS = Number(values.seconds);
const list = (text: string) => text.split(',').map(Number);
const RTTS = list(values.rtts);
const BATCHES = list(values.batches);
const CONCURRENCY = list(values.concurrency);
const MAX_BATCH = Math.max(...BATCHES);
const BUDGET_MS = 170_000;
const startedAt = performance.now();
const log = (line: string) => process.stderr.write(`${line}\n`);

const ACTIONS = ['document.update', 'document.read', 'user.login', 'invoice.approve', 'role.grant'];
/**
 * Events that differ as real ones do (actor, action, target, request id, time), so gzip is not
 * flattered by identical lines; each with a fresh id. Valid by construction (the bench's own
 * check: central refuses nothing, or the dead-letter writer above throws).
 */
function makeBatch(size: number): QueuedEvent[] {
  return Array.from({ length: size }, () => {
    const id = randomUUID();
    const n = Math.floor(Math.random() * 1_000_000);
    const event = auditEventSchema.parse({
      tenant: `tenant-${n % 7}`,
      occurred_at: new Date(Date.UTC(2026, 10, 22, 5) + n).toISOString(),
      action: ACTIONS[n % ACTIONS.length],
      actor: { id: `user:${n}`, type: 'user', name: `User ${n % 977}` },
      target: { id: `doc:${(n * 7919) % 100_000}`, type: 'document', name: `Document ${n % 313}` },
      outcome: n % 11 === 0 ? 'failure' : 'success',
      source_ip: `203.0.${n % 256}.${(n >> 8) % 256}`,
      user_agent: 'billing-service/2.3',
      metadata: { request_id: randomUUID(), path: `/api/v2/documents/${n % 100_000}`, changes: ['title', 'owner'] },
    });
    const row = encodeEventRow(event, id, '2026-11-22T05:00:01.000Z');
    return { id, tenant: event.tenant, row, bytes: Buffer.byteLength(row) };
  });
}

const refuseDeadLetter = { write: () => Promise.reject(new Error('the bench sends no event central refuses')) };

const server = await startBenchServer();
const database = await createModeDatabase(server, 'forward');
const dataDir = path.join(tmpdir(), `bench-forward-central-${randomUUID()}`);
const [port, metricsPort] = [await freePort(), await freePort()];
const central = spawnChild(process.execPath, ['--max-semi-space-size=64', '--import', 'tsx', 'src/server.ts'], {
  env: {
    ...process.env,
    DATABASE_URL: database.url,
    HOST: '127.0.0.1',
    PORT: String(port),
    METRICS_PORT: String(metricsPort),
    DATA_DIR: dataDir,
    AUTH: 'off',
    LOG_LEVEL: 'warn',
    BULK_MAX_EVENTS: String(MAX_BATCH),
    QUEUE_CAPACITY: '400000',
    QUEUE_MAX_BYTES: String(1024 ** 3),
    WAL_MAX_BYTES: String(2 * 1024 ** 3),
    BATCH_MAX_SIZE: '2000',
  },
  logFile: path.join(tmpdir(), 'bench-forward-central.log'),
});
const removeSignalHandlers = exitOnSignal(async () => {
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}, log);
const proxy = new DelayingProxy({ host: '127.0.0.1', port });
const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;

/** Wait until central has stored what it acknowledged (its queue is empty). */
async function centralDrained(): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (value(await scrape(metricsUrl), 'ingest_queue_depth') > 0) {
    if (Date.now() > deadline) throw new Error('central did not drain within 60 s');
    await sleep(50);
  }
}

interface Cell {
  readonly eventsPerSecond: number;
  readonly events: number;
  readonly retries: number;
}

/** `concurrency` workers, each sending batches of `batchSize` back to back for SECONDS. */
async function runCell(rttMs: number, batchSize: number, concurrency: number, gzip: boolean, seconds = SECONDS): Promise<Cell & { warmUp: number; wireBytes: number; bodyBytes: number }> {
  proxy.rttMs = rttMs;
  const client = new ForwardClient({ url: `http://127.0.0.1:${proxyPort}`, apiKey: undefined, connections: concurrency, timeoutMs: 30_000, gzip, maxRetryAfterMs: 1000 });
  const sink = new HttpForwardSink(client, { maxEvents: MAX_BATCH, maxBytes: 4 * 1024 * 1024, deadLetter: refuseDeadLetter });
  const signal = new AbortController().signal;
  let events = 0;
  let warmUp = 0;
  let retries = 0;
  const send = async (batch: QueuedEvent[], counted: boolean) => {
    for (;;) {
      try {
        const result = await sink.write(batch, { signal });
        if (counted) events += result.inserted;
        else warmUp += result.inserted;
        return;
      } catch (error) {
        retries += 1;
        if (retries > 1000) throw error;
        await sleep(50);
      }
    }
  };
  try {
    // Open every connection first (one small request each): keep-alive connections are the steady state.
    await Promise.all(Array.from({ length: concurrency }, () => send(makeBatch(1), false)));
    const upBefore = proxy.bytesUp;
    const bodyBefore = client.bytesSent;
    const begin = performance.now();
    const endAt = begin + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < endAt) await send(makeBatch(batchSize), true);
      }),
    );
    const elapsed = (performance.now() - begin) / 1000;
    return { eventsPerSecond: events / elapsed, events, warmUp, retries, wireBytes: proxy.bytesUp - upBefore, bodyBytes: client.bytesSent - bodyBefore };
  } finally {
    await client.close();
  }
}

let proxyPort = 0;
const results = new Map<string, Cell>();
let acknowledged = 0;
let wire: { gzip: { wire: number; body: number }; plain: { wire: number; body: number } } | undefined;
try {
  await waitUntilHealthy(`http://127.0.0.1:${port}/readyz`, central, 60_000);
  log(`central ready after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
  proxyPort = await proxy.start();
  for (const rtt of RTTS) {
    for (const batch of BATCHES) {
      for (const concurrency of CONCURRENCY) {
        if (performance.now() - startedAt > BUDGET_MS) throw new Error(`over the ${BUDGET_MS / 1000} s budget: fewer cells or --seconds`);
        const cell = await runCell(rtt, batch, concurrency, true);
        acknowledged += cell.events + cell.warmUp;
        results.set(`${rtt}/${batch}/${concurrency}`, cell);
        log(`RTT ${rtt} ms, batch ${batch}, ${concurrency} in flight: ${Math.round(cell.eventsPerSecond)} events/s (${cell.events} events, ${cell.retries} retries)`);
        await centralDrained();
        log(`  central drained at ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
      }
    }
  }
  // Bytes per event on the wire, with and without gzip: 500-event batches, one in flight, no delay.
  const measure = async (gzip: boolean) => {
    const cell = await runCell(0, 500, 1, gzip, 1);
    acknowledged += cell.events + cell.warmUp;
    await centralDrained();
    return { wire: cell.wireBytes / cell.events, body: cell.bodyBytes / cell.events };
  };
  wire = { gzip: await measure(true), plain: await measure(false) };
  const stored = await countRows(database);
  if (stored !== acknowledged) throw new Error(`central holds ${stored} events; it acknowledged ${acknowledged}`);
} finally {
  await proxy.stop();
  await stopChild(central, 10_000);
  killAll();
  removeSignalHandlers();
  await server.stop();
  await rm(dataDir, { recursive: true, force: true });
}

const machine = describeMachine();
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const out: string[] = [];
out.push(`${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; edge sink, central (child process) and PostgreSQL ${server.settings.version} on the same machine; ${SECONDS} s per cell; events of about ${makeBatch(1)[0]!.bytes} bytes (COPY row), each different; ${fmt(acknowledged)} events acknowledged by central and stored there once.`);
out.push('');
out.push(`| added RTT | events per request | ${CONCURRENCY.map((c) => `${c} in flight: events/s`).join(' | ')} | ${CONCURRENCY.map((c) => `${c} in flight: × (${BATCHES[0]}, 1 in flight)`).join(' | ')} | ceiling batch·n/RTT (${CONCURRENCY.join(' / ')}) |`);
out.push(`|---|---|${CONCURRENCY.map(() => '---|').join('')}${CONCURRENCY.map(() => '---|').join('')}---|`);
for (const rtt of RTTS) {
  const baseline = results.get(`${rtt}/${BATCHES[0]}/${CONCURRENCY[0]}`)!.eventsPerSecond;
  for (const batch of BATCHES) {
    const cells = CONCURRENCY.map((c) => results.get(`${rtt}/${batch}/${c}`)!);
    const ceiling = rtt === 0 ? '—' : CONCURRENCY.map((c) => fmt((batch * c * 1000) / rtt)).join(' / ');
    const retries = cells.reduce((sum, cell) => sum + cell.retries, 0);
    out.push(`| ${rtt} ms | ${batch} | ${cells.map((cell) => fmt(cell.eventsPerSecond)).join(' | ')} | ${cells.map((cell) => `${(cell.eventsPerSecond / baseline).toFixed(1)}×`).join(' | ')} | ${ceiling}${retries > 0 ? ` (${retries} retries)` : ''} |`);
  }
}
if (wire) {
  out.push('');
  out.push('| request bodies | bytes per event on the wire (headers included) | body bytes per event | ratio |');
  out.push('|---|---|---|---|');
  out.push(`| NDJSON, no compression (FORWARD_GZIP=false) | ${wire.plain.wire.toFixed(1)} | ${wire.plain.body.toFixed(1)} | 1.00 |`);
  out.push(`| NDJSON, gzip (default) | ${wire.gzip.wire.toFixed(1)} | ${wire.gzip.body.toFixed(1)} | ${(wire.gzip.wire / wire.plain.wire).toFixed(2)} |`);
}
process.stdout.write(`${out.join('\n')}\n`);
