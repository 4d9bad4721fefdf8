import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface OpsRouteOptions {
  readonly registry: Registry;
  /** Why the service is not ready, or undefined when it is. */
  readonly notReadyReason: () => Promise<string | undefined>;
  /** Serve /metrics here (false when METRICS_PORT gives it a listener of its own). */
  readonly serveMetrics: boolean;
}

/** GET /healthz (the process is alive), /readyz (it should get traffic), /metrics (Prometheus). */
export function registerOpsRoutes(app: FastifyInstance, options: OpsRouteOptions): void {
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const reason = await options.notReadyReason();
    if (reason === undefined) return { status: 'ready' };
    return reply.code(503).send({ status: 'not ready', reason });
  });

  if (options.serveMetrics) registerMetricsRoute(app, options.registry);
}

export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get('/metrics', async (_request, reply) => {
    const body = await registry.metrics();
    return reply.type(registry.contentType).send(body);
  });
}
