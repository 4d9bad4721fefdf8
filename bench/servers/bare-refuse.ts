/**
 * The floor of a refusal: bare Fastify (no logger, no auth, no metrics) whose onRequest hook
 * answers every POST /event and POST /events with a 429 problem+json of a precomputed body,
 * before the body is read (Node's http server discards it, as for the service's gate). What any
 * refused HTTP/1.1 request costs in Node + Fastify here, whatever the service does.
 * PORT and HOST from the environment; GET /healthz for readiness.
 */
import Fastify from 'fastify';

const PROBLEM = JSON.stringify({ type: 'urn:audit-ingest:problem:INGEST_ERR_TENANT_RATE_LIMITED', title: 'Tenant rate limited', status: 429, code: 'INGEST_ERR_TENANT_RATE_LIMITED' });

const app = Fastify({ logger: false });
app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
void app.register((routes, _options, done) => {
  routes.addHook('onRequest', (_request, reply, _done) => {
    void reply.code(429).header('retry-after', '1').type('application/problem+json').send(PROBLEM);
  });
  routes.post('/event', (_request, reply) => reply.code(202).send());
  routes.post('/events', (_request, reply) => reply.code(202).send());
  done();
});

process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0));
});
await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) });
