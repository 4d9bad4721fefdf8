import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { buildOpenApiDocument, type OpenApiOptions } from './openapi/document.ts';

export interface OpsRouteOptions {
  readonly registry: Registry;
  /** Why the service is not ready, or undefined when it is. */
  readonly notReadyReason: () => Promise<string | undefined>;
  /** Serve /metrics here (false when METRICS_PORT gives it a listener of its own). */
  readonly serveMetrics: boolean;
  /** What GET /openapi.json describes (the document says whether /metrics is here itself). */
  readonly openApi: Omit<OpenApiOptions, 'metricsRoute'>;
}

/**
 * GET /healthz (the process is alive), /readyz (it should get traffic), /metrics (Prometheus),
 * /openapi.json (the contract: built on its first request, then the same text every time).
 */
export function registerOpsRoutes(app: FastifyInstance, options: OpsRouteOptions): void {
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const reason = await options.notReadyReason();
    if (reason === undefined) return { status: 'ready' };
    return reply.code(503).send({ status: 'not ready', reason });
  });

  if (options.serveMetrics) registerMetricsRoute(app, options.registry);

  let openApiText: string | undefined;
  app.get('/openapi.json', (_request, reply) => {
    openApiText ??= JSON.stringify(buildOpenApiDocument({ ...options.openApi, metricsRoute: options.serveMetrics }));
    return reply.type('application/json; charset=utf-8').send(openApiText);
  });
}

export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get('/metrics', async (_request, reply) => {
    const body = await registry.metrics();
    return reply.type(registry.contentType).send(body);
  });
}
