/**
 * Mode (c), the ceiling: a bare Fastify handler that parses the same JSON body and answers 202.
 * No validation, no storage. PORT and HOST from the environment; GET /healthz for readiness.
 */
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';

const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
app.removeContentTypeParser('text/plain');
app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
app.post('/event', async (request, reply) => {
  if (typeof request.body !== 'object' || request.body === null) return reply.code(400).send({ error: 'not an object' });
  // The same response shape as the service's 202.
  return reply.code(202).send({ id: randomUUID() });
});

process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) });
