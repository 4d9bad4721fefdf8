import fastifyCompress from '@fastify/compress';
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { lazyChildLoggerFactory } from './telemetry/lazy-child-logger.ts';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import { IngestError, type ErrorCode } from './errors.ts';
import { Admission } from './http/admission.ts';
import type { Authenticator } from './auth/authenticator.ts';
import type { TenantRateLimiter } from './limits/tenant-rate-limiter.ts';
import { registerNdjsonBodyParser } from './http/bulk-body.ts';
import { createIngestGate } from './http/ingest-gate.ts';
import { TenantFairness } from './http/tenant-fairness.ts';
import { registerBulkRoute } from './http/bulk-route.ts';
import { registerEventRoute } from './http/event-route.ts';
import { registerOpsRoutes } from './http/ops-routes.ts';
import { registerJsonBodyParser } from './http/json-body.ts';
import { handleError, sendProblem } from './http/problem.ts';
import { REQUEST_ENCODINGS } from './http/request-encodings.ts';
import { recordRoutes } from './http/route-list.ts';
import { packageVersion } from './package-version.ts';
import type { IngestPipeline } from './ingest/pipeline.ts';
import type { Durability } from './wal/durability.ts';
import { statusClass, type IngestMetrics } from './telemetry/metrics.ts';
import { closeSilentConnections } from './http/idle-connection-timeout.ts';
import { deferContinueToIngestGate } from './http/expect-continue.ts';


/** An error whose fields (message included: enumerable) survive @fastify/compress copying them. */
function decompressionError(statusCode: number, code: string, message: string): Error {
  return Object.assign(new Error(message), { statusCode, code, message });
}

const OPS_PATHS = new Set(['/healthz', '/readyz', '/metrics', '/openapi.json']);

/** Retry-After of a request refused because this instance is closing: another instance can take it. */
const DRAINING_RETRY_AFTER_SECONDS = 1;

/** Refusals that protect the queue, as ingest_shed_total reasons. */
const SHED_REASONS: Partial<Record<ErrorCode, string>> = {
  INGEST_ERR_OVERLOADED: 'overloaded',
  INGEST_ERR_QUEUE_FULL: 'queue_full',
  INGEST_ERR_DRAINING: 'draining',
  INGEST_ERR_TENANT_OVER_SHARE: 'tenant_over_share',
  INGEST_ERR_TENANT_RATE_LIMITED: 'tenant_rate_limited',
};

export interface AppDependencies {
  readonly config: Pick<Config, 'ackMode' | 'bodyLimitBytes' | 'bulk' | 'queue' | 'http' | 'tracing' | 'trustProxy'>;
  readonly pipeline: IngestPipeline;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: IngestMetrics;
  /** What must happen before an event is acknowledged (DURABILITY). */
  readonly durability: Durability;
  /** API-key authentication; undefined with AUTH=off. */
  readonly authenticator: Authenticator | undefined;
  /** Per-tenant rate limits (TENANT_*); undefined when off. */
  readonly rateLimiter?: TenantRateLimiter | undefined;
  /** False when METRICS_PORT serves /metrics on a listener of its own. */
  readonly serveMetricsOnMainListener?: boolean;
  /** Why the service should not get traffic now (/readyz 503), or undefined when it should. */
  readonly notReadyReason: () => Promise<string | undefined>;
}

export interface IngestApp {
  readonly app: FastifyInstance;
  readonly admission: Admission;
}

/** Build the HTTP application: plugins and routes, no listen. */
export function buildApp(dependencies: AppDependencies): IngestApp {
  const { config, pipeline, metrics } = dependencies;
  const app = Fastify({
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- widens the instance's logger type so route modules take a plain FastifyInstance
    loggerInstance: dependencies.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    // Request loggers are made on first use: most requests log nothing (lazy-child-logger.ts).
    childLoggerFactory: lazyChildLoggerFactory,
    bodyLimit: config.bodyLimitBytes,
    // Off: its bare 503 skips the hooks (no problem+json, code, Retry-After or metrics); the
    // onRequest hook below answers requests that arrive while closing instead.
    return503OnClosing: false,
    // A slowloris is cut off: headers must arrive within headersTimeout and the whole request
    // within requestTimeout (Node checks every connectionsCheckingInterval).
    http: {
      headersTimeout: config.http.headersTimeoutMs,
      maxHeaderSize: config.http.maxHeaderBytes,
      connectionsCheckingInterval: Math.min(1000, config.http.headersTimeoutMs),
    },
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // TRUST_PROXY: behind a load balancer request.ip (the failed-authentication limiter's key) is
    // the client's, not the balancer's.
    // A hop count as the function fastify itself builds from one (its types take no number).
    trustProxy:
      typeof config.trustProxy === 'number'
        ? ((hops) => (_address: string, hop: number) => hop < hops)(config.trustProxy)
        : typeof config.trustProxy === 'object'
          ? [...config.trustProxy]
          : config.trustProxy,
  });
  app.server.maxConnections = config.http.maxConnections;
  recordRoutes(app);
  // Request spans (and the context handlers run in) come from @fastify/otel, registered only
  // when OTEL_* configures tracing: otherwise its per-request hooks would cost for nothing.
  if (config.tracing) {
    void app.register(new FastifyOtelInstrumentation({ ignorePaths: (options) => OPS_PATHS.has(options.url), instrumentHooks: false }).plugin());
  }
  registerJsonBodyParser(app);
  registerNdjsonBodyParser(app);
  // Request bodies may be compressed; every limit applies to the decompressed bytes, enforced by
  // fastify while the stream is read, so a decompression bomb is cut off at the limit.
  void app.register(fastifyCompress, {
    globalCompression: false,
    globalDecompression: true,
    requestEncodings: [...REQUEST_ENCODINGS],
    // @fastify/compress copies these fields onto the error it raises; toIngestError maps the code.
    onUnsupportedRequestEncoding: (encoding) =>
      decompressionError(415, 'INGEST_ERR_UNSUPPORTED_ENCODING', `Content-Encoding "${encoding}" is not supported; use one of ${REQUEST_ENCODINGS.join(', ')}`),
    onInvalidRequestPayload: (encoding, _request, error) =>
      decompressionError(400, 'INGEST_ERR_BAD_ENCODING', `the ${encoding} body is truncated or corrupt: ${error.message}`),
  });

  // The pipeline is the one view of the queue: admission reads depth, room and drain rate from it.
  const admission = new Admission(
    pipeline,
    { highWater: config.queue.shedHighWater, lowWater: config.queue.shedLowWater, policy: config.queue.admissionPolicy, waitMs: config.queue.admissionWaitMs },
  );

  const fairness = new TenantFairness({
    clock: dependencies.clock,
    capacity: config.queue.capacity,
    highWater: config.queue.shedHighWater,
    minShare: config.queue.tenantMinShare,
    activeWindowMs: config.queue.tenantActiveWindowMs,
    // Shares are of what each tenant holds, queued or being written (the tenant depths count both).
    tenantDepth: (tenant) => pipeline.tenantDepth(tenant),
    queueDepth: () => pipeline.depth,
    contendedAbove: config.queue.capacity * config.queue.shedLowWater,
    retryAfterSeconds: () => admission.retryAfterSeconds(),
    waits: admission.waits,
  });

  app.setErrorHandler(handleError);
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, new IngestError('INGEST_ERR_NOT_FOUND', `no route for ${request.method} ${request.url}`)),
  );
  app.decorateReply('problemCode', undefined);
  // While the app closes, requests still arriving on kept-alive connections (fastify sets
  // Connection: close on their answers) get a counted INGEST_ERR_DRAINING problem with Retry-After.
  // The ops routes keep answering: /readyz says why it is not ready.
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // Callback-style hooks here and in the ingest gate: they run on every request, and an async
  // hook costs a promise and a microtask each time. The closing check is the gate's first (ingest
  // routes only; one hook less per request): ops routes keep answering, others get their 404.
  // One labelled child per (route, status), looked up once: prom-client hashes labels on every inc.
  // Keyed by route, then status: no key string is built per request.
  type ResponseCounter = { inc(): void; observe(seconds: number): void };
  const responseCounters = new Map<string, Map<number, ResponseCounter>>();
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched';
    let byStatus = responseCounters.get(route);
    if (!byStatus) responseCounters.set(route, (byStatus = new Map<number, ResponseCounter>()));
    let counter = byStatus.get(reply.statusCode);
    if (!counter) {
      const tally = metrics.responseTally(route, reply.statusCode);
      const duration = metrics.httpRequestDuration.labels({ route, status_class: statusClass(reply.statusCode) });
      counter = { inc: () => void (tally.count += 1), observe: (seconds) => duration.observe(seconds) };
      byStatus.set(reply.statusCode, counter);
    }
    counter.inc();
    counter.observe(reply.elapsedTime / 1000);
    // Request logs at debug: method, path, status, time, tenant. Never a body or a header.
    if (request.log.level === 'debug' || request.log.level === 'trace') {
      request.log.debug(
        { method: request.method, path: request.routeOptions.url ?? 'unmatched', status: reply.statusCode, ms: reply.elapsedTime, tenant: request.tenant, code: reply.problemCode },
        'request completed',
      );
    }
    const shedReason = reply.problemCode === undefined ? undefined : SHED_REASONS[reply.problemCode];
    if (shedReason) metrics.shed.inc({ reason: shedReason });
    done();
  });

  // A connection that never sends a request is closed too (headersTimeout starts at its first byte).
  closeSilentConnections(app.server, config.http.headersTimeoutMs);
  // Expect: 100-continue on an ingest route is answered by the ingest gate: a refused client never sends its body.
  deferContinueToIngestGate(app.server);
  app.decorateRequest('tenant', undefined);
  // Ingest routes go in a plugin registered after the decompression plugin, so its preParsing
  // hook applies, and so the gate (auth, then admission) covers them and not the ops routes.
  void app.register((routes, _options, done) => {
    routes.addHook(
      'onRequest',
      createIngestGate({ admission, fairness, authenticator: dependencies.authenticator, rateLimiter: dependencies.rateLimiter, isClosing: () => closing, closingRetryAfterSeconds: DRAINING_RETRY_AFTER_SECONDS }),
    );
    const context = { pipeline, admission, fairness, durability: dependencies.durability, clock: dependencies.clock, ackMode: config.ackMode, rateLimiter: dependencies.rateLimiter };
    registerEventRoute(routes, context, { bodyLimitBytes: config.bodyLimitBytes });
    registerBulkRoute(routes, context, { maxEvents: config.bulk.maxEvents, bodyLimitBytes: config.bulk.bodyLimitBytes });
    done();
  });
  registerOpsRoutes(app, {
    registry: metrics.registry,
    notReadyReason: async () => (closing ? 'closing' : dependencies.notReadyReason()),
    serveMetrics: dependencies.serveMetricsOnMainListener ?? true,
    openApi: {
      version: packageVersion(),
      auth: dependencies.authenticator !== undefined,
      ackMode: config.ackMode,
      bodyLimitBytes: config.bodyLimitBytes,
      bulk: config.bulk,
      requestEncodings: REQUEST_ENCODINGS,
    },
  });
  return { app, admission };
}
