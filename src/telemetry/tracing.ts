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
 * Start the OpenTelemetry Node SDK, configured by the standard OTEL_* variables (exporter: OTLP
 * over HTTP by default). Off unless configured. Export runs in the SDK's batch span processor,
 * off the request path; a collector that is down costs dropped spans, never a failed event.
 * Resolves with a shutdown function that flushes pending spans.
 */
export async function startTracing(environment: Record<string, string | undefined>, logger: Logger): Promise<() => Promise<void>> {
  if (!tracingConfigured(environment)) return async () => {};
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({
    serviceName: environment.OTEL_SERVICE_NAME ?? 'audit-ingest',
    instrumentations: [],
  });
  sdk.start();
  logger.info({ endpoint: environment.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? environment.OTEL_EXPORTER_OTLP_ENDPOINT }, 'OpenTelemetry tracing started');
  return async () => {
    await sdk.shutdown().catch((error: unknown) => logger.warn({ err: error }, 'could not flush the last spans to the collector; they are dropped'));
  };
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
