/**
 * `npm run bench:jetstream [-- --events=N --rounds=R]` (needs `nats-server -js` at NATS_URL,
 * default nats://127.0.0.1:4222; run it under `flock -o /tmp/bench.lock`).
 *
 * Seed task 15's comparison, on JetStream: what application-level batching buys a broker sink.
 *  - per event: publish, wait for the stream's acknowledgement, publish the next (one round trip
 *    and one stream write acknowledged per event);
 *  - batched: the service's JetStreamSink, each batch's publishes sent at once and all their
 *    acknowledgements awaited (batches of 100 and 500, one or two batches in flight as with
 *    FLUSH_CONCURRENCY=1/2).
 * Every mode publishes to a scratch stream (file storage, the service's settings) with the
 * service's Nats-Msg-Id, and the stream must hold exactly the events sent afterwards.
 * Prints a Markdown table: events/s, median of the rounds (and the range).
 *
 * Then the other half (skip with --no-consumer): the consumer draining a backlog of `--backlog`
 * events (default 50,000) into PostgreSQL (embedded, fsync on, or DATABASE_URL) at
 * CONSUMER_BATCH_SIZE 100 and 500 — the rate a backlog left by a database outage drains at.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { connect, nanos } from '@nats-io/transport-node';
import { encodeEventRow } from '../src/event/copy-row.ts';
import type { QueuedEvent } from '../src/event/queued-event.ts';
import { auditEventSchema } from '../src/event/schema.ts';
import { messageIdOf, subjectOfTenant } from '../src/jetstream/subject.ts';
import { JetStreamSink } from '../src/sink/jetstream-sink.ts';
import { loadConsumerConfig } from '../src/consumer/consumer-config.ts';
import { ConsumerRuntime } from '../src/consumer/consumer-runtime.ts';
import { countRows, createModeDatabase, startBenchServer } from './lib/database.ts';
import { pino } from 'pino';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '3' },
    backlog: { type: 'string', default: '50000' },
    'no-consumer': { type: 'boolean', default: false },
  },
});
const EVENTS = Number(values.events);
const ROUNDS = Number(values.rounds);
const url = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

function makeEvents(count: number): QueuedEvent[] {
  return Array.from({ length: count }, (_, index) => {
    const event = auditEventSchema.parse({
      tenant: `tenant-${index % 10}`,
      occurred_at: '2026-11-22T05:00:00.000Z',
      action: 'document.update',
      actor: { id: `user:${index}`, type: 'user', name: 'Ada' },
      target: { id: 'doc:9', type: 'document', name: 'Q3 plan' },
      outcome: 'success',
      source_ip: '203.0.113.7',
      metadata: { request_id: `r-${index}` },
    });
    const id = randomUUID();
    const row = encodeEventRow(event, id, '2026-11-22T05:00:01.000Z');
    return { id, tenant: event.tenant, row, bytes: Buffer.byteLength(row) };
  });
}

const nc = await connect({ servers: url });
const jsm = await jetstreamManager(nc);
const js = jetstream(nc);
const signal = new AbortController().signal;
const serverVersion = nc.info?.version ?? 'unknown';

interface Mode {
  readonly label: string;
  /** Events per round (per-event publishing is slow: a quarter of the others). */
  readonly events: number;
  run(events: readonly QueuedEvent[], prefix: string): Promise<void>;
}

const batched = (batchSize: number, inFlight: number): Mode => ({
  label: `batched: ${batchSize} per batch, ${inFlight} in flight`,
  events: EVENTS,
  async run(events, prefix) {
    const sink = new JetStreamSink(js, { publishTimeoutMs: 10_000, subjectPrefix: prefix });
    let next = 0;
    const worker = async () => {
      while (next < events.length) {
        const start = next;
        next += batchSize;
        await sink.write(events.slice(start, start + batchSize), { signal });
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
  },
});

const modes: Mode[] = [
  {
    label: 'per event: publish, await the ack',
    events: Math.max(1, Math.floor(EVENTS / 4)),
    async run(events, prefix) {
      for (const event of events) await js.publish(subjectOfTenant(prefix, event.tenant), event.row, { msgID: messageIdOf(event), timeout: 10_000 });
    },
  },
  batched(100, 1),
  batched(500, 1),
  batched(500, 2),
];

const rows: string[] = [];
for (const mode of modes) {
  const rates: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const suffix = randomBytes(4).toString('hex');
    const name = `BENCH_${suffix}`;
    const prefix = `bench_${suffix}`;
    await jsm.streams.add({ name, subjects: [`${prefix}.>`], storage: StorageType.File, duplicate_window: nanos(120_000) });
    try {
      const events = makeEvents(mode.events);
      const startedAt = performance.now();
      await mode.run(events, prefix);
      const seconds = (performance.now() - startedAt) / 1000;
      const stored = (await jsm.streams.info(name)).state.messages;
      if (stored !== events.length) throw new Error(`${mode.label}: the stream holds ${stored} of ${events.length}`);
      rates.push(events.length / seconds);
    } finally {
      await jsm.streams.delete(name);
    }
  }
  rates.sort((a, b) => a - b);
  const median = rates[Math.floor(rates.length / 2)]!;
  const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
  rows.push(`| ${mode.label} | ${mode.events.toLocaleString('en-US')} | ${fmt(median)} | ${fmt(rates[0]!)}–${fmt(rates.at(-1)!)} |`);
  process.stderr.write(`${mode.label}: ${fmt(median)} events/s\n`);
}
const consumerRows: string[] = [];
if (!values['no-consumer']) {
  const backlog = Number(values.backlog);
  const server = await startBenchServer();
  try {
    for (const batchSize of [100, 500]) {
      const suffix = randomBytes(4).toString('hex');
      const name = `BENCH_${suffix}`;
      const prefix = `bench_${suffix}`;
      await jsm.streams.add({ name, subjects: [`${prefix}.>`], storage: StorageType.File, duplicate_window: nanos(120_000) });
      const database = await createModeDatabase(server, `consumer_${batchSize}`);
      const dataDir = path.join(tmpdir(), `bench-consumer-${suffix}`);
      try {
        const sink = new JetStreamSink(js, { publishTimeoutMs: 10_000, subjectPrefix: prefix });
        const events = makeEvents(backlog);
        for (let start = 0; start < events.length; start += 500) await sink.write(events.slice(start, start + 500), { signal });
        const config = loadConsumerConfig({
          NATS_URL: url,
          NATS_STREAM: name,
          NATS_SUBJECT_PREFIX: prefix,
          DATABASE_URL: database.url,
          DATA_DIR: dataDir,
          METRICS_PORT: '0',
          LOG_LEVEL: 'warn',
          CONSUMER_BATCH_SIZE: String(batchSize),
        });
        const startedAt = performance.now();
        const consumer = await ConsumerRuntime.start(config, pino({ level: 'warn' }));
        void consumer.run();
        while ((await countRows(database)) < backlog) await new Promise((resolve) => setTimeout(resolve, 20));
        const seconds = (performance.now() - startedAt) / 1000;
        await consumer.close(5_000);
        const rate = Math.round(backlog / seconds).toLocaleString('en-US');
        consumerRows.push(`| ${batchSize} | ${backlog.toLocaleString('en-US')} | ${seconds.toFixed(2)} | ${rate} |`);
        process.stderr.write(`consumer, batch ${batchSize}: ${rate} events/s\n`);
      } finally {
        await jsm.streams.delete(name);
        await rm(dataDir, { recursive: true, force: true });
      }
    }
  } finally {
    await server.stop();
  }
}
await nc.close();

process.stdout.write(`nats-server ${serverVersion}, file storage, ${ROUNDS} rounds each (fresh stream per round), events of ~${makeEvents(1)[0]!.bytes} bytes\n\n`);
process.stdout.write('| mode | events per round | events/s (median) | range |\n|---|---|---|---|\n');
process.stdout.write(`${rows.join('\n')}\n`);
if (consumerRows.length > 0) {
  process.stdout.write('\nThe consumer draining a backlog into PostgreSQL (start, fetch, COPY, commit, ack; connect and migrations included):\n\n');
  process.stdout.write('| CONSUMER_BATCH_SIZE | events | seconds | events/s |\n|---|---|---|---|\n');
  process.stdout.write(`${consumerRows.join('\n')}\n`);
}
