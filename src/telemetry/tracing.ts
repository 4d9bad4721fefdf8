import { trace, type Link, type SpanContext, type Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';

/** The service's tracer. A no-op until an SDK registers a provider (startTracing, or a test's). */
export function tracer(): Tracer {
  return trace.getTracer('audit-ingest');
}

/** Whether the OTEL_* environment asks for traces to be exported. */
export function tracingConfigured(environment: Record<string, string | undefined>): boolean {
  if (environment.OTEL_SDK_DISABLED === 'true' || environment.OTEL_TRACES_EXPORTER === 'none') return false;
  return Boolean(environment.OTEL_EXPORTER_OTLP_ENDPOINT || environment.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || environment.OTEL_TRACES_EXPORTER);
}

/**
 * Start tracing, configured by the standard OTEL_* variables: a Node tracer provider (async-hooks
 * context, W3C trace-context propagation) with the batch span processor and the OTLP/HTTP (JSON)
 * exporter only, so the image carries no gRPC, protobuf, Zipkin or Prometheus exporters (as the
 * all-in-one @opentelemetry/sdk-node would). Traces go to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
 * OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces (default http://localhost:4318). The exporter reads
 * OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT, the processor OTEL_BSP_*. Off unless configured. Export
 * runs in the batch span processor, off the request path; a collector that is down costs dropped
 * spans, never a failed event. Resolves with a shutdown function that flushes pending spans.
 */
export async function startTracing(environment: Record<string, string | undefined>, logger: Logger): Promise<() => Promise<void>> {
  if (!tracingConfigured(environment)) return async () => {};
  const protocol = environment.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? environment.OTEL_EXPORTER_OTLP_PROTOCOL;
  if (protocol !== undefined && protocol !== 'http/json') {
    logger.warn({ protocol }, 'only OTLP over HTTP with JSON (http/json) is built in; traces are sent that way. Point the endpoint at an OTLP/HTTP receiver (port 4318)');
  }
  if (environment.OTEL_TRACES_EXPORTER !== undefined && environment.OTEL_TRACES_EXPORTER !== 'otlp') {
    logger.warn({ exporter: environment.OTEL_TRACES_EXPORTER }, 'only the otlp traces exporter is built in; using it');
  }
  const [{ NodeTracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }] = await Promise.all([
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
  ]);
  const url = tracesEndpoint(environment);
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': environment.OTEL_SERVICE_NAME ?? 'audit-ingest' }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }))],
  });
  provider.register();
  logger.info({ endpoint: url }, 'OpenTelemetry tracing started');
  return async () => {
    await provider.shutdown().catch((error: unknown) => logger.warn({ err: error }, 'could not flush the last spans to the collector; they are dropped'));
  };
}

/** The OTLP/HTTP traces URL the OTEL_* variables name (the spec's rules for the signal path). */
export function tracesEndpoint(environment: Record<string, string | undefined>): string {
  const specific = environment.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (specific) return specific;
  const base = environment.OTEL_EXPORTER_OTLP_ENDPOINT || 'http://localhost:4318';
  return `${base.replace(/\/+$/, '')}/v1/traces`;
}

/** Span links to the request spans of a batch's events (one per traced event). */
export function linksTo(contexts: Iterable<SpanContext | undefined>): Link[] {
  const links: Link[] = [];
  for (const context of contexts) if (context) links.push({ context });
  return links;
}

/** pino mixin: trace and span ids on every log line written inside a span. */
export function traceLogFields(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (!span) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  return { trace_id: traceId, span_id: spanId, trace_flags: `0${traceFlags.toString(16)}` };
}
