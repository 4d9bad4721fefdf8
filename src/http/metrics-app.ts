import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { registerMetricsRoute } from './ops-routes.ts';

/** A listener that serves GET /metrics and nothing else (METRICS_PORT). */
export function createMetricsApp(registry: Registry, logger: Logger): FastifyInstance {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- widens the logger type so the route helper takes a plain FastifyInstance
  const app = Fastify({ loggerInstance: logger.child({ listener: 'metrics' }) as FastifyBaseLogger });
  registerMetricsRoute(app, registry);
  return app;
}
