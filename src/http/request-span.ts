import type { SpanContext } from '@opentelemetry/api';
import type { FastifyRequest } from 'fastify';

/**
 * The span @fastify/otel opened for this request, when it is being recorded: the events it brings
 * carry it so their flush span can link back. Undefined when tracing is off (no per-event cost).
 */
export function requestSpanOf(request: FastifyRequest): SpanContext | undefined {
  const otel = (request as FastifyRequest & { opentelemetry?: () => { span?: { isRecording(): boolean; spanContext(): SpanContext } | null } })
    .opentelemetry?.();
  const span = otel?.span;
  return span?.isRecording() ? span.spanContext() : undefined;
}
