import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface OpsRouteOptions {
  readonly registry: Registry;
  /** Why the service is not ready, or undefined when it is. */
  readonly notReadyReason: () => Promise<string | undefined>;
}

/** GET /healthz (the process is alive), /readyz (it should get traffic), /metrics (Prometheus). */
export function registerOpsRoutes(app: FastifyInstance, options: OpsRouteOptions): void {
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const reason = await options.notReadyReason();
    if (reason === undefined) return { status: 'ready' };
    return reply.code(503).send({ status: 'not ready', reason });
  });

  app.get('/metrics', async (_request, reply) => {
    const body = await options.registry.metrics();
    return reply.type(options.registry.contentType).send(body);
  });
}
