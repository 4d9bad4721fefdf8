import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { deadLetterDirectory } from './dlq/dlq-files.ts';
import { tracingConfigured } from './telemetry/tracing.ts';
import { IngestInternalError } from './internal-errors.ts';

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const fraction = z.coerce.number().gt(0).lte(1);

/** proxy-addr's names for address ranges, which Fastify's trustProxy accepts too. */
const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

function isProxyAddressOrRange(entry: string): boolean {
  if (PROXY_RANGE_NAMES.has(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/**
 * TRUST_PROXY, as Fastify's trustProxy option takes it: `false` (default: the peer address is the
 * client), `true` (the first X-Forwarded-For address), a hop count, or the comma-separated
 * addresses / CIDRs (or loopback, linklocal, uniquelocal) of the proxies to trust.
 */
const trustProxy = z
  .string()
  .trim()
  .default('false')
  .transform((value, context): boolean | number | string[] => {
    if (value === 'true' || value === 'false') return value === 'true';
    if (/^\d+$/.test(value)) return Number(value);
    const entries = value.split(',').map((entry) => entry.trim());
    const bad = entries.filter((entry) => !isProxyAddressOrRange(entry));
    if (bad.length === 0) return entries;
    context.addIssue({
      code: 'custom',
      message: `must be true, false, a hop count, or comma-separated IP addresses / CIDRs (or loopback, linklocal, uniquelocal); not ${bad.join(', ')}`,
    });
    return z.NEVER;
  });

/** Every environment variable the service reads, with its default. Units are in the names. */
const environmentSchema = z
  .object({
    HOST: z.string().min(1).default('0.0.0.0'),
    PORT: integer(0, 65535).default(8080),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
    DATA_DIR: z.string().min(1).default('./.data'),
    AUTH: z.enum(['on', 'off']).default('on'),
    AUTH_CACHE_TTL_MS: integer(0, 3_600_000).default(30_000),
    AUTH_MAX_FAILURES_PER_MINUTE: integer(1, 1_000_000).default(30),
    TRUST_PROXY: trustProxy,
    METRICS_PORT: integer(0, 65535).optional(),
    METRICS_HOST: z.string().min(1).default('127.0.0.1'),
    METRICS_ON_PUBLIC_LISTENER: z.enum(['true', 'false']).default('false'),
    DURABILITY: z.enum(['wal', 'memory']).default('wal'),
    WAL_MAX_BYTES: integer(1024 * 1024, 1024 ** 4).default(256 * 1024 * 1024),
    WAL_SEGMENT_BYTES: integer(64 * 1024, 1024 ** 3).default(16 * 1024 * 1024),
    ACK_MODE: z.enum(['queued', 'committed']).default('queued'),
    BATCH_MAX_SIZE: integer(1, 100_000).default(500),
    BATCH_MAX_BYTES: integer(1024, 256 * 1024 * 1024).default(4 * 1024 * 1024),
    BATCH_MAX_WAIT_MS: integer(0, 60_000).default(200),
    BATCH_FLUSH: z.enum(['natural', 'window']).optional(),
    BATCH_WINDOW: z.enum(['static', 'adaptive']).default('static'),
    BATCH_LATENCY_SLO_MS: integer(1, 600_000).default(250),
    QUEUE_CAPACITY: integer(1, 10_000_000).default(2048),
    QUEUE_MAX_BYTES: integer(1024, 4 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    BATCH_PARTITION: z.enum(['none', 'tenant']).default('none'),
    BATCH_MAX_OPEN_PARTITIONS: integer(1, 100_000).default(1024),
    TENANT_MIN_SHARE: integer(1, 10_000_000).default(64),
    TENANT_ACTIVE_WINDOW_MS: integer(100, 3_600_000).default(10_000),
    TENANT_RATE_LIMIT: integer(1, 100_000_000).optional(),
    TENANT_RATE_BURST: integer(1, 1_000_000_000).optional(),
    TENANT_BYTE_RATE_LIMIT: integer(1, 1024 ** 4).optional(),
    TENANT_BYTE_BURST: integer(1, 1024 ** 4).optional(),
    TENANT_LIMITS_POLL_MS: integer(100, 3_600_000).default(5_000),
    FLUSH_CONCURRENCY: integer(1, 64).default(2),
    SHED_HIGH_WATER: fraction.default(0.8),
    SHED_LOW_WATER: fraction.default(0.6),
    ADMISSION_POLICY: z.enum(['standing', 'depth']).default('standing'),
    ADMISSION_WAIT_MS: integer(0, 60_000).default(1000),
    SHUTDOWN_TIMEOUT_MS: integer(0, 10 * 60_000).default(30_000),
    BODY_LIMIT_BYTES: integer(1024, 64 * 1024 * 1024).default(64 * 1024),
    HTTP_HEADERS_TIMEOUT_MS: integer(100, 600_000).default(10_000),
    HTTP_REQUEST_TIMEOUT_MS: integer(100, 600_000).default(30_000),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: integer(100, 600_000).default(65_000),
    HTTP_MAX_HEADER_BYTES: integer(1024, 1024 * 1024).default(16 * 1024),
    HTTP_MAX_CONNECTIONS: integer(1, 1_000_000).default(10_000),
    BULK_MAX_EVENTS: integer(1, 100_000).default(1000),
    BULK_BODY_LIMIT_BYTES: integer(1024, 256 * 1024 * 1024).default(4 * 1024 * 1024),
    DB_POOL_SIZE: integer(1, 100).default(4),
    DB_CONNECT_TIMEOUT_MS: integer(100, 120_000).default(5_000),
    DB_STATEMENT_TIMEOUT_MS: integer(100, 600_000).default(10_000),
    DB_COPY_TIMEOUT_MS: integer(100, 600_000).default(15_000),
    ROLLUPS: z.enum(['on', 'off']).default('off'),
    AUDIT_CHAIN: z.enum(['on', 'off']).default('off'),
    AUDIT_SIGNING_KEY_FILE: z.string().min(1).optional(),
    AUDIT_SIGNING_KEY: z.string().min(1).optional(),
    AUDIT_CHECKPOINT_FILE: z.string().min(1).optional(),
    AUDIT_CHECKPOINT_WEBHOOK_URL: z.url({ protocol: /^https?$/ }).optional(),
    AUDIT_CHECKPOINT_WEBHOOK_TOKEN: z.string().min(1).optional(),
    AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_MS: integer(100, 600_000).default(10_000),
    AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS: integer(10, 3_600_000).default(60_000),
    AUDIT_CHECKPOINT_EVENTS: integer(1, 1_000_000_000).default(10_000),
    AUDIT_CHECKPOINT_INTERVAL_MS: integer(100, 24 * 3_600_000).default(60_000),
    PARTITION_DAYS_AHEAD: integer(0, 366).default(7),
    PARTITION_MAINTENANCE_INTERVAL_MS: integer(1_000, 24 * 3_600_000).default(3_600_000),
    PARTITION_LOCK_TIMEOUT_MS: integer(1, 600_000).default(2_000),
    RETENTION_DAYS: integer(1, 100_000).optional(),
    RETRY_MAX_ATTEMPTS: integer(0, 1_000_000).default(0),
    RETRY_BASE_DELAY_MS: integer(1, 60_000).default(100),
    RETRY_MAX_DELAY_MS: integer(1, 600_000).default(5_000),
    BREAKER_FAILURE_THRESHOLD: integer(1, 1000).default(5),
    BREAKER_OPEN_MS: integer(10, 3_600_000).default(30_000),
    DLQ_MAX_FILE_BYTES: integer(1024, 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    SINK: z.enum(['postgres', 'jetstream', 'http']).default('postgres'),
    FORWARD_URL: z.url({ protocol: /^https?$/ }).optional(),
    FORWARD_API_KEY: z.string().min(1).optional(),
    FORWARD_MAX_EVENTS: integer(1, 100_000).default(1000),
    FORWARD_MAX_BYTES: integer(1024, 256 * 1024 * 1024).default(4 * 1024 * 1024),
    FORWARD_TIMEOUT_MS: integer(100, 600_000).default(10_000),
    FORWARD_GZIP: z.enum(['true', 'false']).default('true'),
    FORWARD_MAX_RETRY_AFTER_MS: integer(0, 600_000).default(30_000),
    NATS_URL: z.string().min(1).default('nats://127.0.0.1:4222'),
    NATS_STREAM: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1–64 of [A-Za-z0-9_-]').default('AUDIT_EVENTS'),
    NATS_SUBJECT_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be subject tokens of [A-Za-z0-9_-] joined by dots').default('audit'),
    NATS_PUBLISH_TIMEOUT_MS: integer(100, 600_000).default(5_000),
    NATS_CONNECT_TIMEOUT_MS: integer(100, 120_000).default(5_000),
    NATS_DUPLICATE_WINDOW_MS: integer(1_000, 7 * 24 * 3_600_000).default(120_000),
  })
  .refine((env) => env.HTTP_HEADERS_TIMEOUT_MS <= env.HTTP_REQUEST_TIMEOUT_MS, {
    message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS',
    path: ['HTTP_HEADERS_TIMEOUT_MS'],
  })
  .refine((env) => env.SHED_LOW_WATER < env.SHED_HIGH_WATER, {
    message: 'must be below SHED_HIGH_WATER',
    path: ['SHED_LOW_WATER'],
  })
  .refine((env) => env.RETRY_BASE_DELAY_MS <= env.RETRY_MAX_DELAY_MS, {
    message: 'must not exceed RETRY_MAX_DELAY_MS',
    path: ['RETRY_BASE_DELAY_MS'],
  })
  // A log smaller than one segment fills before its first segment rolls: refuse it at start.
  .refine((env) => env.WAL_SEGMENT_BYTES <= env.WAL_MAX_BYTES, {
    message: 'must not be below WAL_SEGMENT_BYTES',
    path: ['WAL_MAX_BYTES'],
  })
  .refine((env) => env.SINK !== 'http' || env.FORWARD_URL !== undefined, {
    message: 'must be set with SINK=http (the base URL of the receiving instance)',
    path: ['FORWARD_URL'],
  })
  .refine((env) => env.AUTH === 'on' || (env.TENANT_RATE_LIMIT === undefined && env.TENANT_BYTE_RATE_LIMIT === undefined), {
    message: 'per-tenant rate limits need AUTH=on: the tenant is known before the body is read only from the API key',
    path: ['TENANT_RATE_LIMIT'],
  })
  .refine((env) => env.AUDIT_SIGNING_KEY_FILE === undefined || env.AUDIT_SIGNING_KEY === undefined, {
    message: 'set AUDIT_SIGNING_KEY_FILE or AUDIT_SIGNING_KEY, not both',
    path: ['AUDIT_SIGNING_KEY'],
  })
  // Each destination of the signed checkpoints (the file, the webhook) needs the same two things: a
  // key to sign with, and the chain it signs.
  .superRefine((env, context) => {
    for (const destination of ['AUDIT_CHECKPOINT_FILE', 'AUDIT_CHECKPOINT_WEBHOOK_URL'] as const) {
      if (env[destination] === undefined) continue;
      if (env.AUDIT_SIGNING_KEY_FILE === undefined && env.AUDIT_SIGNING_KEY === undefined) {
        context.addIssue({
          code: 'custom',
          message: 'signed checkpoints need a key: AUDIT_SIGNING_KEY_FILE (a PEM Ed25519 private key, `npm run audit -- keygen`) or AUDIT_SIGNING_KEY',
          path: [destination],
        });
      }
      if (env.AUDIT_CHAIN !== 'on' || env.SINK !== 'postgres') {
        context.addIssue({ code: 'custom', message: 'checkpoints sign the audit chain: they need AUDIT_CHAIN=on and SINK=postgres', path: [destination] });
      }
    }
  })
  .refine((env) => env.AUDIT_CHECKPOINT_WEBHOOK_TOKEN === undefined || env.AUDIT_CHECKPOINT_WEBHOOK_URL !== undefined, {
    message: 'is sent to AUDIT_CHECKPOINT_WEBHOOK_URL: set that too',
    path: ['AUDIT_CHECKPOINT_WEBHOOK_TOKEN'],
  })
  .refine((env) => env.BATCH_MAX_SIZE <= env.QUEUE_CAPACITY, {
    message: 'must not exceed QUEUE_CAPACITY',
    path: ['BATCH_MAX_SIZE'],
  });

type Environment = z.output<typeof environmentSchema>;

/** /metrics names tenants: by default it has a listener of its own on 127.0.0.1, here. */
const DEFAULT_METRICS_PORT = 9464;

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly logLevel: Environment['LOG_LEVEL'];
  /** Undefined: start the embedded PostgreSQL under dataDir. */
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly ackMode: Environment['ACK_MODE'];
  readonly durability: {
    /** 'wal': a 202 is sent after the event's write-ahead-log record is fsynced. */
    readonly mode: 'wal' | 'memory';
    readonly directory: string;
    readonly maxBytes: number;
    readonly segmentBytes: number;
  };
  /**
   * Per-tenant token buckets at the ingest gate (src/limits/); undefined (the default) when neither
   * TENANT_RATE_LIMIT nor TENANT_BYTE_RATE_LIMIT is set: no check on the request path at all.
   * A dimension without a limit is unlimited (rate Infinity) unless a tenant's override sets one.
   */
  readonly tenantLimits:
    | {
        readonly events: { readonly rate: number; readonly burst: number };
        readonly bytes: { readonly rate: number; readonly burst: number };
        /** How often running services read the overrides (`npm run keys -- limit`). */
        readonly pollMs: number;
      }
    | undefined;
  readonly auth: {
    readonly enabled: boolean;
    /** How long a key lookup is trusted: a revoked key stops working within this. 0: no cache. */
    readonly cacheTtlMs: number;
    readonly maxFailuresPerMinute: number;
  };
  /** OTEL_* asks for traces: request spans are then created (no per-request hooks otherwise). */
  readonly tracing: boolean;
  /**
   * The port of the /metrics listener of its own (METRICS_PORT, default 9464); undefined (only
   * with METRICS_ON_PUBLIC_LISTENER=true and no METRICS_PORT): no such listener.
   */
  readonly metricsPort: number | undefined;
  /** Where that listener binds: 127.0.0.1 unless METRICS_HOST says otherwise (metrics name tenants). */
  readonly metricsHost: string;
  /** METRICS_ON_PUBLIC_LISTENER=true: /metrics on the public, unauthenticated listener too. */
  readonly metricsOnPublicListener: boolean;
  readonly batch: {
    readonly maxSize: number;
    readonly maxBytes: number;
    readonly maxWaitMs: number;
    /**
     * BATCH_FLUSH: 'natural' sends a batch as soon as a flush slot is free (no linger timer),
     * 'window' waits for maxWaitMs or maxSize. Unset: natural with ACK_MODE=committed, window with
     * queued (README "Batch flushing").
     */
    readonly flushPolicy: 'natural' | 'window';
    /** BATCH_WINDOW: 'adaptive' lets the AIMD controller (adaptive-window.ts) move size and wait. */
    readonly window: 'static' | 'adaptive';
    /** BATCH_LATENCY_SLO_MS: the accepted → committed latency the adaptive window keeps under. */
    readonly latencySloMs: number;
    readonly flushConcurrency: number;
    /** 'tenant': one open batch per tenant, so a batch never mixes tenants. */
    readonly partition: 'none' | 'tenant';
    readonly maxOpenPartitions: number;
  };
  readonly queue: {
    readonly capacity: number;
    readonly maxBytes: number;
    readonly shedHighWater: number;
    readonly shedLowWater: number;
    /** A tenant is refused (429) past max(this, its fair share of the high-water mark). */
    readonly tenantMinShare: number;
    /** Tenants seen within this window count as active when the fair share is computed. */
    readonly tenantActiveWindowMs: number;
    /** standing: wait for room, shed on a standing queue; depth: shed on one depth read (admission.ts). */
    readonly admissionPolicy: 'standing' | 'depth';
    /** How long a request admitted by policy standing may wait for room or its share. */
    readonly admissionWaitMs: number;
  };
  readonly shutdownTimeoutMs: number;
  /** Fastify's trustProxy: which X-Forwarded-* hops to believe for the client address (request.ip). */
  readonly trustProxy: boolean | number | readonly string[];
  /** Limits that keep slow or greedy clients from holding the listener. */
  readonly http: {
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly maxHeaderBytes: number;
    readonly maxConnections: number;
  };
  /** Limit on a decompressed POST /event body. */
  readonly bodyLimitBytes: number;
  readonly bulk: {
    readonly maxEvents: number;
    /** Limit on a decompressed POST /events body. */
    readonly bodyLimitBytes: number;
  };
  readonly db: {
    readonly poolSize: number;
    readonly connectTimeoutMs: number;
    readonly statementTimeoutMs: number;
    readonly copyTimeoutMs: number;
    /**
     * ROLLUPS=on: the COPY sink keeps event_counts (per-minute counts) exact, in each batch's
     * transaction (src/sink/minute-rollup.ts). Off by default: it costs the sink 1.1–1.7× per batch of 500,
     * and concurrent flushes on the same minute wait for each other's count rows (README).
     */
    readonly rollups: boolean;
  };
  /** Tamper evidence (src/audit/, README "Tamper evidence"). */
  readonly audit: AuditConfig;
  /** The daily partitions of `events` (src/db/partition-maintenance.ts). */
  readonly partitions: {
    readonly daysAhead: number;
    /** RETENTION_DAYS: drop partitions whose whole day is older than this; undefined (default): keep everything. */
    readonly retentionDays: number | undefined;
    readonly intervalMs: number;
    readonly lockTimeoutMs: number;
  };
  readonly retry: {
    /** Tries in all for a transient failure; 0: no limit, until the shutdown deadline. */
    readonly maxAttempts: number;
    readonly baseDelayMs: number;
    readonly maxDelayMs: number;
  };
  readonly breaker: {
    readonly failureThreshold: number;
    readonly openMs: number;
  };
  readonly deadLetter: {
    readonly directory: string;
    readonly maxFileBytes: number;
  };
  /** SINK: where batches go — PostgreSQL COPY (default), a NATS JetStream stream (src/jetstream/), or another instance over HTTP (src/forward/). */
  readonly sink: 'postgres' | 'jetstream' | 'http';
  readonly jetstream: JetStreamConfig;
  readonly forward: ForwardConfig;
}

export interface AuditConfig {
  /** AUDIT_CHAIN=on: the COPY sink appends every inserted event to its tenant's hash chain, in the batch's transaction. */
  readonly chain: boolean;
  /** Where the Ed25519 signing key (PEM, PKCS#8) comes from; undefined: no checkpoints. */
  readonly signingKey: { readonly file: string } | { readonly pem: string } | undefined;
  /** The append-only NDJSON file signed checkpoints go to; undefined: not to a file. */
  readonly checkpointFile: string | undefined;
  /** The receiver signed checkpoints are POSTed to (src/audit/checkpoint-webhook.ts); undefined: none. */
  readonly checkpointWebhook: CheckpointWebhookConfig | undefined;
  /** A checkpoint after this many chained events, ... */
  readonly checkpointEvents: number;
  /** ... or this long after the first event not checkpointed yet, and at shutdown. */
  readonly checkpointIntervalMs: number;
}

/** AUDIT_CHECKPOINT_WEBHOOK_*: where else the checkpoint lines go, besides (or instead of) the file. */
export interface CheckpointWebhookConfig {
  /** http or https; each POST carries one trigger's lines as NDJSON, byte for byte the file's. */
  readonly url: string;
  /** Sent as `Authorization: Bearer`; undefined: no Authorization header. */
  readonly token: string | undefined;
  /** Bound on one POST, and on the delivery still under way at shutdown. */
  readonly timeoutMs: number;
  /** Retries back off exponentially (full jitter) from 0.5 s up to this. */
  readonly retryMaxDelayMs: number;
}

/** SINK=http: batches go to another instance of this service (src/forward/). */
export interface ForwardConfig {
  /** The receiving instance's base URL; POST <url>/events, GET <url>/readyz. */
  readonly url: string | undefined;
  /** Sent as `Authorization: Bearer`; undefined: the receiver runs AUTH=off. */
  readonly apiKey: string | undefined;
  /** At most this many events per request: the receiver's BULK_MAX_EVENTS (default 1000). */
  readonly maxEvents: number;
  /** At most this many uncompressed bytes per request: the receiver's BULK_BODY_LIMIT_BYTES (4 MiB). */
  readonly maxBytes: number;
  /** Bound on one request (connect, answer headers, answer body). */
  readonly timeoutMs: number;
  /** Request bodies gzip-compressed (Content-Encoding: gzip). */
  readonly gzip: boolean;
  /** The longest a receiver's Retry-After (429/503) is waited before the write fails and is retried. */
  readonly maxRetryAfterMs: number;
}

export interface JetStreamConfig {
  readonly url: string;
  /** The stream events are published to (created if missing: file storage, subjects `<subjectPrefix>.>`). */
  readonly stream: string;
  /** Events go to `<subjectPrefix>.<tenant>` (default `audit`). */
  readonly subjectPrefix: string;
  /** How long a publish waits for the stream's acknowledgement before it counts as failed (transient). */
  readonly publishTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** The stream's duplicate window when this service creates it: a retried Nats-Msg-Id within it is stored once. */
  readonly duplicateWindowMs: number;
}

export class ConfigError extends IngestInternalError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('CONFIG_ERR_INVALID', message, options);
  }
}

/** Validate the environment once, at start-up. Throws ConfigError naming each bad variable. */
export function loadConfig(environment: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(Object.entries(environment).filter(([, value]) => value !== ''));
  const parsed = environmentSchema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join('.') || '(environment)'}: ${issue.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const env = parsed.data;
  const dataDir = path.resolve(env.DATA_DIR);
  return Object.freeze({
    host: env.HOST,
    port: env.PORT,
    logLevel: env.LOG_LEVEL,
    databaseUrl: env.DATABASE_URL,
    dataDir,
    ackMode: env.ACK_MODE,
    durability: {
      mode: env.DURABILITY,
      directory: path.join(dataDir, 'wal'),
      maxBytes: env.WAL_MAX_BYTES,
      segmentBytes: env.WAL_SEGMENT_BYTES,
    },
    tenantLimits:
      env.TENANT_RATE_LIMIT === undefined && env.TENANT_BYTE_RATE_LIMIT === undefined
        ? undefined
        : {
            events: { rate: env.TENANT_RATE_LIMIT ?? Infinity, burst: env.TENANT_RATE_BURST ?? env.TENANT_RATE_LIMIT ?? Infinity },
            bytes: { rate: env.TENANT_BYTE_RATE_LIMIT ?? Infinity, burst: env.TENANT_BYTE_BURST ?? env.TENANT_BYTE_RATE_LIMIT ?? Infinity },
            pollMs: env.TENANT_LIMITS_POLL_MS,
          },
    auth: {
      enabled: env.AUTH === 'on',
      cacheTtlMs: env.AUTH_CACHE_TTL_MS,
      maxFailuresPerMinute: env.AUTH_MAX_FAILURES_PER_MINUTE,
    },
    metricsPort: env.METRICS_PORT ?? (env.METRICS_ON_PUBLIC_LISTENER === 'true' ? undefined : DEFAULT_METRICS_PORT),
    metricsHost: env.METRICS_HOST,
    metricsOnPublicListener: env.METRICS_ON_PUBLIC_LISTENER === 'true',
    tracing: tracingConfigured(environment),
    batch: {
      maxSize: env.BATCH_MAX_SIZE,
      maxBytes: env.BATCH_MAX_BYTES,
      maxWaitMs: env.BATCH_MAX_WAIT_MS,
      flushPolicy: env.BATCH_FLUSH ?? (env.ACK_MODE === 'committed' ? 'natural' : 'window'),
      window: env.BATCH_WINDOW,
      latencySloMs: env.BATCH_LATENCY_SLO_MS,
      flushConcurrency: env.FLUSH_CONCURRENCY,
      partition: env.BATCH_PARTITION,
      maxOpenPartitions: env.BATCH_MAX_OPEN_PARTITIONS,
    },
    queue: {
      capacity: env.QUEUE_CAPACITY,
      maxBytes: env.QUEUE_MAX_BYTES,
      shedHighWater: env.SHED_HIGH_WATER,
      shedLowWater: env.SHED_LOW_WATER,
      tenantMinShare: env.TENANT_MIN_SHARE,
      tenantActiveWindowMs: env.TENANT_ACTIVE_WINDOW_MS,
      admissionPolicy: env.ADMISSION_POLICY,
      admissionWaitMs: env.ADMISSION_WAIT_MS,
    },
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    trustProxy: env.TRUST_PROXY,
    http: {
      headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      maxHeaderBytes: env.HTTP_MAX_HEADER_BYTES,
      maxConnections: env.HTTP_MAX_CONNECTIONS,
    },
    bodyLimitBytes: env.BODY_LIMIT_BYTES,
    bulk: { maxEvents: env.BULK_MAX_EVENTS, bodyLimitBytes: env.BULK_BODY_LIMIT_BYTES },
    db: {
      poolSize: env.DB_POOL_SIZE,
      connectTimeoutMs: env.DB_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: env.DB_STATEMENT_TIMEOUT_MS,
      copyTimeoutMs: env.DB_COPY_TIMEOUT_MS,
      rollups: env.ROLLUPS === 'on',
    },
    audit: {
      chain: env.AUDIT_CHAIN === 'on',
      signingKey:
        env.AUDIT_SIGNING_KEY_FILE !== undefined
          ? { file: path.resolve(env.AUDIT_SIGNING_KEY_FILE) }
          : env.AUDIT_SIGNING_KEY !== undefined
            ? { pem: env.AUDIT_SIGNING_KEY }
            : undefined,
      checkpointFile: env.AUDIT_CHECKPOINT_FILE === undefined ? undefined : path.resolve(env.AUDIT_CHECKPOINT_FILE),
      checkpointWebhook:
        env.AUDIT_CHECKPOINT_WEBHOOK_URL === undefined
          ? undefined
          : {
              url: env.AUDIT_CHECKPOINT_WEBHOOK_URL,
              token: env.AUDIT_CHECKPOINT_WEBHOOK_TOKEN,
              timeoutMs: env.AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_MS,
              retryMaxDelayMs: env.AUDIT_CHECKPOINT_WEBHOOK_RETRY_MAX_DELAY_MS,
            },
      checkpointEvents: env.AUDIT_CHECKPOINT_EVENTS,
      checkpointIntervalMs: env.AUDIT_CHECKPOINT_INTERVAL_MS,
    },
    partitions: {
      daysAhead: env.PARTITION_DAYS_AHEAD,
      retentionDays: env.RETENTION_DAYS,
      intervalMs: env.PARTITION_MAINTENANCE_INTERVAL_MS,
      lockTimeoutMs: env.PARTITION_LOCK_TIMEOUT_MS,
    },
    retry: {
      maxAttempts: env.RETRY_MAX_ATTEMPTS,
      baseDelayMs: env.RETRY_BASE_DELAY_MS,
      maxDelayMs: env.RETRY_MAX_DELAY_MS,
    },
    breaker: {
      failureThreshold: env.BREAKER_FAILURE_THRESHOLD,
      openMs: env.BREAKER_OPEN_MS,
    },
    deadLetter: {
      directory: deadLetterDirectory(dataDir),
      maxFileBytes: env.DLQ_MAX_FILE_BYTES,
    },
    sink: env.SINK,
    jetstream: {
      url: env.NATS_URL,
      stream: env.NATS_STREAM,
      subjectPrefix: env.NATS_SUBJECT_PREFIX,
      publishTimeoutMs: env.NATS_PUBLISH_TIMEOUT_MS,
      connectTimeoutMs: env.NATS_CONNECT_TIMEOUT_MS,
      duplicateWindowMs: env.NATS_DUPLICATE_WINDOW_MS,
    },
    forward: {
      url: env.FORWARD_URL,
      apiKey: env.FORWARD_API_KEY,
      maxEvents: env.FORWARD_MAX_EVENTS,
      maxBytes: env.FORWARD_MAX_BYTES,
      timeoutMs: env.FORWARD_TIMEOUT_MS,
      gzip: env.FORWARD_GZIP === 'true',
      maxRetryAfterMs: env.FORWARD_MAX_RETRY_AFTER_MS,
    },
  });
}
