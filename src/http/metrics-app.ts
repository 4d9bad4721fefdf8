import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { registerMetricsRoute } from './ops-routes.ts';

/** A listener that serves GET /metrics and nothing else (METRICS_PORT). */
export function createMetricsApp(registry: Registry, logger: Logger): FastifyInstance {
  const app = Fastify({ loggerInstance: logger.child({ listener: 'metrics' }) });
  registerMetricsRoute(app, registry);
  return app;
}
