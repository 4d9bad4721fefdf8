import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { WINDOW_DECISIONS } from '@audit-ingest/batcher';
import { LeanHistogram } from './lean-histogram.ts';

const TOP_TENANTS = 20;

/** Buckets for a 500-event batch world: sizes in events, bytes of COPY text, and latencies. */
const BATCH_SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 200, 300, 400, 500, 1000, 2000];
const BATCH_BYTES_BUCKETS = [1024, 8192, 32768, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608];
const FLUSH_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Accept-to-commit: fine around the 1 s SLO, then out to 10 min, the age a backlog reaches in an outage. */
const LATENCY_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** HTTP request duration: a 202 takes a WAL group commit (~1 ms), a 201 a batch commit (~0.2 s). */
const HTTP_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Label values known in advance, started at 0 so a fresh scrape already has their series. */
const FLUSH_REASONS = ['size', 'bytes', 'time', 'shutdown', 'partitions', 'natural'] as const;
const DROP_REASONS = ['spilled', 'left_in_wal'] as const;
const SHED_REASONS = ['overloaded', 'queue_full', 'draining', 'tenant_over_share'] as const;
const BREAKER_STATES = ['open', 'half_open', 'closed'] as const;
const INGEST_ROUTES = ['/event', '/events'] as const;
/** The answers of the ingest routes a dashboard or alert divides by (accepted, refused, shed). */
const INGEST_STATUSES = [201, 202, 400, 401, 413, 429, 503] as const;
const STATUS_CLASSES = ['2xx', '4xx', '5xx'] as const;

/** "2xx" for 202: the request-duration histogram's label (bounded: five values). */
export function statusClass(statusCode: number): string {
  return `${Math.floor(statusCode / 100)}xx`;
}

export type IngestMetrics = ReturnType<typeof createMetrics>;

/**
 * Every instrument the service exposes, on a registry of its own (never the global one).
 * The names are a contract with dashboards and alerts.
 */
export function createMetrics(registry = new Registry()) {
  const metrics = createInstruments(registry);
  // Labelled counters have no series until their first increment (prom-client's labels() only
  // binds a label set; inc(labels, 0) and Histogram.zero() create the series), so a panel shows
  // "No data" after a restart and rate() misses the first increment: start every known label
  // value at 0. test/unit/metrics.test.ts scrapes a fresh registry for each of them.
  for (const reason of FLUSH_REASONS) metrics.flushes.inc({ reason }, 0);
  for (const reason of WINDOW_DECISIONS) metrics.batchWindowDecisions.inc({ reason }, 0);
  for (const reason of DROP_REASONS) metrics.eventsDropped.inc({ reason }, 0);
  for (const reason of SHED_REASONS) metrics.shed.inc({ reason }, 0);
  for (const to of BREAKER_STATES) metrics.breakerTransitions.inc({ to }, 0);
  for (const result of ['success', 'failure'] as const) metrics.databaseProbes.inc({ result }, 0);
  for (const action of ['remove', 'roll'] as const) metrics.walHousekeepingFailures.inc({ action }, 0);
  for (const destination of ['file', 'webhook'] as const) {
    for (const result of ['written', 'failed'] as const) metrics.auditCheckpointWrites.inc({ destination, result }, 0);
    metrics.auditCheckpointsSuperseded.inc({ destination }, 0);
  }
  for (const reason of ['write', 'corrupt'] as const) metrics.auditCheckpointOutboxFailures.inc({ reason }, 0);
  for (const found of ['missing', 'behind'] as const) metrics.auditHeadsRecovered.inc({ found }, 0);
  for (const route of INGEST_ROUTES) {
    for (const status of INGEST_STATUSES) metrics.httpResponses.inc({ route, status }, 0);
    for (const status_class of STATUS_CLASSES) metrics.httpRequestDuration.zero({ route, status_class });
  }
  return metrics;
}

function createInstruments(registry: Registry) {
  collectDefaultMetrics({ register: registry });
  let readQueueDepth: () => number = () => 0;
  let readTenantDepths: () => Iterable<[string, number]> = () => [];
  let readWal: () => { bytes: number; segments: number } = () => ({ bytes: 0, segments: 0 });
  let readPool: () => { total: number; idle: number; waiting: number } = () => ({ total: 0, idle: 0, waiting: 0 });
  let readOldestAgeSeconds: () => number = () => 0;
  const responseTallies = new Map<string, { readonly labels: { route: string; status: number }; count: number }>();
  return {
    registry,
    /** The queue depth gauge reads this at scrape time, so the hot path never updates it. */
    setQueueDepthSource(source: () => number): void {
      readQueueDepth = source;
    },
    setTenantDepthSource(source: () => Iterable<[string, number]>): void {
      readTenantDepths = source;
    },
    setPoolSource(source: () => { total: number; idle: number; waiting: number }): void {
      readPool = source;
    },
    setWalSource(source: () => { bytes: number; segments: number }): void {
      readWal = source;
    },
    /**
     * The oldest-unsettled-event gauge reads `oldestEnqueuedAtMs()` (an enqueue time on `clock`,
     * or undefined when nothing is unsettled: Batcher.oldestEnqueuedAtMs) at scrape time.
     */
    setOldestUnsettledSource(oldestEnqueuedAtMs: () => number | undefined, clock: { now(): number }): void {
      readOldestAgeSeconds = () => {
        const oldest = oldestEnqueuedAtMs();
        return oldest === undefined ? 0 : Math.max(0, clock.now() - oldest) / 1000;
      };
    },
    oldestUnsettledAge: new Gauge({
      name: 'ingest_oldest_unsettled_event_age_seconds',
      help: 'Age of the oldest accepted event not yet settled (stored, dead-lettered or dropped); 0 when none waits. Grows without bound while nothing is stored, whatever the traffic.',
      registers: [registry],
      collect() {
        this.set(readOldestAgeSeconds());
      },
    }),
    tenantQueueDepth: new Gauge({
      name: 'ingest_tenant_queue_depth',
      help: `Unsettled events per tenant, for the ${TOP_TENANTS} tenants holding most; the rest summed as tenant="other" (bounded cardinality).`,
      labelNames: ['tenant'] as const,
      registers: [registry],
      collect() {
        this.reset();
        const depths = [...readTenantDepths()].sort((a, b) => b[1] - a[1]);
        let other = 0;
        depths.forEach(([tenant, depth], index) => {
          if (index < TOP_TENANTS) this.set({ tenant }, depth);
          else other += depth;
        });
        if (depths.length > TOP_TENANTS) this.set({ tenant: 'other' }, other);
      },
    }),
    shed: new Counter({
      name: 'ingest_shed_total',
      help: 'Requests refused to protect the queue, by reason (overloaded 429, queue_full 503, draining 503, tenant_over_share 429).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    copyBytes: new Counter({
      name: 'ingest_copy_bytes_total',
      help: 'Bytes of COPY text sent to PostgreSQL in committed batches.',
      registers: [registry],
    }),
    poolConnections: new Gauge({
      name: 'ingest_db_pool_connections',
      help: 'Database pool connections by state: in_use (writing a batch or probing) or idle.',
      labelNames: ['state'] as const,
      registers: [registry],
      collect() {
        const pool = readPool();
        this.set({ state: 'in_use' }, pool.total - pool.idle);
        this.set({ state: 'idle' }, pool.idle);
      },
    }),
    poolWaiting: new Gauge({
      name: 'ingest_db_pool_waiting',
      help: 'Callers waiting for a database pool connection (all DB_POOL_SIZE connections busy).',
      registers: [registry],
      collect() {
        this.set(readPool().waiting);
      },
    }),
    walBytes: new Gauge({
      name: 'ingest_wal_bytes',
      help: 'Bytes of write-ahead-log segments on disk (segments are removed once all their events are settled).',
      registers: [registry],
      collect() {
        this.set(readWal().bytes);
      },
    }),
    walSegments: new Gauge({
      name: 'ingest_wal_segments',
      help: 'Write-ahead-log segment files on disk.',
      registers: [registry],
      collect() {
        this.set(readWal().segments);
      },
    }),
    walFsyncDuration: new Histogram({
      name: 'ingest_wal_fsync_duration_seconds',
      help: 'Time of one write-ahead-log fdatasync (group commit; the next group is written while it runs); every 202 waits for one.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers: [registry],
    }),
    walGroupSize: new Histogram({
      name: 'ingest_wal_group_size',
      help: 'Events made durable by one write-ahead-log fsync (group commit).',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [registry],
    }),
    walReplayed: new Counter({
      name: 'ingest_wal_replayed_total',
      help: 'Events replayed from the write-ahead log at start-up (those already stored count as duplicates).',
      registers: [registry],
    }),
    walQuarantined: new Counter({
      name: 'ingest_wal_quarantined_total',
      help: 'Corrupt write-ahead-log ranges skipped at start-up and kept in DATA_DIR/wal/quarantine for inspection.',
      registers: [registry],
    }),
    walHousekeepingFailures: new Counter({
      name: 'ingest_wal_housekeeping_failures_total',
      help: 'Settled write-ahead-log segments that could not be deleted (action=remove) or rolled (action=roll); each is retried at the next settle and keeps counting toward WAL_MAX_BYTES meanwhile.',
      labelNames: ['action'] as const,
      registers: [registry],
    }),
    walTornTails: new Counter({
      name: 'ingest_wal_torn_tails_total',
      help: 'Write-ahead-log records cut short by a crash mid-append (never acknowledged), truncated at start-up.',
      registers: [registry],
    }),
    auditChainedEvents: new Counter({
      name: 'ingest_audit_chained_events_total',
      help: "Events linked into their tenant's audit hash chain (AUDIT_CHAIN=on), counted when their batch committed; a duplicate takes no place in the chain and is not counted.",
      registers: [registry],
    }),
    auditHeadsRecovered: new Counter({
      name: 'ingest_audit_heads_recovered_total',
      help: "Audit chain heads (AUDIT_CHAIN=on) found not pointing at their tenant's last link and moved to it, in the transaction that appended the next link, by what was found: missing (the row was deleted from audit_chain_heads while links remained) or behind (its seq was edited back). Each is a row of audit_chain_head_recoveries and an error log naming the tenant and the link; the events are stored once. Someone changed audit_chain_heads behind the service.",
      labelNames: ['found'] as const,
      registers: [registry],
    }),
    auditCheckpointWrites: new Counter({
      name: 'ingest_audit_checkpoint_writes_total',
      help: 'Exports of signed chain-head checkpoints, by destination (file: one append to AUDIT_CHECKPOINT_FILE; webhook: one POST to AUDIT_CHECKPOINT_WEBHOOK_URL) and result (written; failed: the file tries again at the next trigger, the webhook after a backoff, and until then the chain past the last exported checkpoint could be cut unseen).',
      labelNames: ['destination', 'result'] as const,
      registers: [registry],
    }),
    auditCheckpointsSuperseded: new Counter({
      name: 'ingest_audit_checkpoints_superseded_total',
      help: "Signed checkpoint lines a destination dropped unsent because a newer head of the same tenant replaced them while it was failing (the newer one pins every link the older one did), by destination.",
      labelNames: ['destination'] as const,
      registers: [registry],
    }),
    auditCheckpointWebhookRefusals: new Counter({
      name: 'ingest_audit_checkpoint_webhook_refusals_total',
      help: 'POSTs of signed checkpoints that AUDIT_CHECKPOINT_WEBHOOK_URL refused with a status retrying does not change (4xx other than 408, 425, 429: a wrong token or path, a receiver that does not take the body). Also counted as failed writes; the lines are kept and tried again every AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS until the receiver takes them.',
      registers: [registry],
    }),
    auditCheckpointOutboxLines: new Gauge({
      name: 'ingest_audit_checkpoint_outbox_lines',
      help: 'Signed checkpoint lines (at most one per tenant) in DATA_DIR/audit-checkpoints-outbox.ndjson as last written: taken for AUDIT_CHECKPOINT_WEBHOOK_URL and not yet delivered. What a stop or a crash leaves there is sent first at the next start.',
      registers: [registry],
    }),
    auditCheckpointOutboxFailures: new Counter({
      name: 'ingest_audit_checkpoint_outbox_failures_total',
      help: 'Failures of the webhook outbox DATA_DIR/audit-checkpoints-outbox.ndjson, by reason (write: a rewrite failed, the waiting lines are in memory only until one succeeds; corrupt: at start it could not be read whole and was set aside as .corrupt-<time>, its good lines still delivered).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    auditUnsignedEvents: new Gauge({
      name: 'ingest_audit_unsigned_events',
      help: 'Chained events this process committed that no checkpoint stored by every destination covers yet: not signed yet, or signed and still waiting at the file or the webhook (bounded by AUDIT_CHECKPOINT_EVENTS while checkpoints are exported).',
      registers: [registry],
    }),
    buildInfo: new Gauge({
      name: 'ingest_build_info',
      help: 'Always 1; the labels say which build and Node.js version run.',
      labelNames: ['version', 'node'] as const,
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'ingest_batch_size',
      help: 'Events per flushed batch.',
      buckets: BATCH_SIZE_BUCKETS,
      registers: [registry],
    }),
    batchBytes: new Histogram({
      name: 'ingest_batch_bytes',
      help: 'Bytes of COPY text per flushed batch.',
      buckets: BATCH_BYTES_BUCKETS,
      registers: [registry],
    }),
    flushDuration: new Histogram({
      name: 'ingest_flush_duration_seconds',
      help: 'Time one batch spent in the sink (COPY and commit), successful or not.',
      buckets: FLUSH_SECONDS_BUCKETS,
      registers: [registry],
    }),
    flushes: new Counter({
      name: 'ingest_flushes_total',
      help: 'Batches flushed, by what triggered the flush (size, bytes, time, shutdown, partitions; natural: BATCH_FLUSH=natural sent it because a flush slot was free).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: 'ingest_queue_depth',
      help: 'Events accepted and waiting to be written (open batch and sealed batches waiting for a flush slot; batches being written are not counted): what QUEUE_CAPACITY bounds and the 80 %/60 % marks read.',
      registers: [registry],
      collect() {
        this.set(readQueueDepth());
      },
    }),
    batchWindowSize: new Gauge({
      name: 'ingest_batch_window_size',
      help: 'Events a batch is sealed at now: BATCH_MAX_SIZE, or where BATCH_WINDOW=adaptive has moved it.',
      registers: [registry],
    }),
    batchWindowWait: new Gauge({
      name: 'ingest_batch_window_wait_seconds',
      help: 'How long a batch lingers for more events now (BATCH_FLUSH=window): BATCH_MAX_WAIT_MS, or where BATCH_WINDOW=adaptive has moved it.',
      registers: [registry],
    }),
    batchWindowDecisions: new Counter({
      name: 'ingest_batch_window_decisions_total',
      help: 'Decisions of the adaptive batch window (BATCH_WINDOW=adaptive), by reason: increase_size, increase_wait (latency well under BATCH_LATENCY_SLO_MS), decrease_latency (over it), decrease_congestion (database timeouts, too many connections, lost connections), hold.',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    queueCapacity: new Gauge({
      name: 'ingest_queue_capacity',
      help: 'Maximum events the queue holds (QUEUE_CAPACITY); shedding starts at SHED_HIGH_WATER of it.',
      registers: [registry],
    }),
    // Observed for every event of a batch at once (lean-histogram.ts): 500 prom-client observes per batch cost ~1.6 % CPU.
    batchLatency: new LeanHistogram({
      name: 'ingest_batch_latency_seconds',
      help: 'Time from an event being accepted to its batch being committed (observed for every event).',
      buckets: LATENCY_SECONDS_BUCKETS,
      registers: [registry],
    }),
    eventsAccepted: new Counter({
      name: 'ingest_events_accepted_total',
      help: 'Events accepted into the queue (answered 202, or awaiting commit for a 201).',
      registers: [registry],
    }),
    eventsStored: new Counter({
      name: 'ingest_events_stored_total',
      help: 'Accepted events newly inserted into the events table.',
      registers: [registry],
    }),
    eventsDuplicate: new Counter({
      name: 'ingest_events_duplicate_total',
      help: 'Accepted events whose id was already stored (client re-sends, replays, retries); nothing was written.',
      registers: [registry],
    }),
    eventsDeadLettered: new Counter({
      name: 'ingest_events_dead_lettered_total',
      help: 'Accepted events the database refused for good, written to the dead-letter queue (DATA_DIR/dlq) for re-drive.',
      registers: [registry],
    }),
    retries: new Counter({
      name: 'ingest_retries_total',
      help: 'Batch writes retried after a transient database failure.',
      registers: [registry],
    }),
    poisonSplits: new Counter({
      name: 'ingest_poison_splits_total',
      help: 'Batches split in halves to isolate events the database refused.',
      registers: [registry],
    }),
    breakerState: new Gauge({
      name: 'ingest_breaker_state',
      help: 'Circuit breaker in front of the database: 0 closed, 1 open (no writes sent), 2 half-open (one test batch).',
      registers: [registry],
    }),
    databaseProbes: new Counter({
      name: 'ingest_database_probes_total',
      help: 'Probes of the database (SELECT 1 on a fresh connection) while the circuit breaker is open after connection failures, by result; they back off while they fail.',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    breakerTransitions: new Counter({
      name: 'ingest_breaker_transitions_total',
      help: 'Circuit breaker state changes, by the state entered.',
      labelNames: ['to'] as const,
      registers: [registry],
    }),
    deadLetterWriteErrors: new Counter({
      name: 'ingest_dlq_write_errors_total',
      help: 'Failed writes to the dead-letter queue (disk full, unwritable); the events stay queued and the write is retried.',
      registers: [registry],
    }),
    eventsFailed: new Counter({
      name: 'ingest_events_failed_total',
      help: 'Accepted events whose batch failed to commit.',
      registers: [registry],
    }),
    eventsDropped: new Counter({
      name: 'ingest_events_dropped_total',
      help: 'Accepted events left unstored at the shutdown deadline, by reason: spilled (written to DATA_DIR/spill, DURABILITY=memory) or left_in_wal (replayed from the write-ahead log at the next start).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    // Observed for every request, on a child looked up once per (route, status) (lean-histogram.ts).
    httpRequestDuration: new LeanHistogram({
      name: 'ingest_http_request_duration_seconds',
      help: 'Time from a request arriving to its response being sent (Fastify reply.elapsedTime), by route and status class (2xx, 4xx, 5xx).',
      labelNames: ['route', 'status_class'] as const,
      buckets: HTTP_SECONDS_BUCKETS,
      registers: [registry],
    }),
    httpResponses: new Counter({
      name: 'ingest_http_responses_total',
      help: 'HTTP responses by route and status code.',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
      collect() {
        for (const tally of responseTallies.values()) {
          if (tally.count === 0) continue;
          this.inc(tally.labels, tally.count);
          tally.count = 0;
        }
      },
    }),
    /**
     * A counter of responses for one (route, status), added to ingest_http_responses_total at each
     * scrape: per request it is one integer increment, where prom-client's inc hashes the labels.
     */
    responseTally(route: string, status: number): { count: number } {
      const key = `${route} ${status}`;
      let tally = responseTallies.get(key);
      if (!tally) responseTallies.set(key, (tally = { labels: { route, status }, count: 0 }));
      return tally;
    },
  };
}
