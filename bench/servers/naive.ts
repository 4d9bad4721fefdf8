/**
 * Mode (a), the baseline: the same zod validation, then one INSERT per event in its own statement
 * and transaction (autocommit), answering 201 after it commits. PORT, HOST, DATABASE_URL and
 * NAIVE_POOL_SIZE (default 10, pg's default) from the environment; GET /healthz for readiness.
 */
import Fastify from 'fastify';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { auditEventSchema } from '../../src/event/schema.ts';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  process.stderr.write('DATABASE_URL is required\n');
  process.exit(2);
}
const pool = new pg.Pool({
  connectionString: databaseUrl,
  max: Number(process.env.NAIVE_POOL_SIZE ?? 10),
  application_name: 'bench-naive',
  statement_timeout: 10_000,
  connectionTimeoutMillis: 5_000,
});
pool.on('error', () => {});

const INSERT = `INSERT INTO events (id, tenant, occurred_at, received_at, action, actor_id, actor_type, actor_name,
  target_id, target_type, target_name, outcome, source_ip, user_agent, metadata)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`;

const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
app.removeContentTypeParser('text/plain');
app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
app.post('/event', async (request, reply) => {
  const parsed = auditEventSchema.safeParse(request.body);
  if (!parsed.success) return reply.code(400).send({ error: 'invalid event', issues: parsed.error.issues.length });
  const event = parsed.data;
  const id = event.id ?? uuidv7(); // time-ordered, as the service assigns
  try {
    await pool.query(INSERT, [
      id,
      event.tenant,
      event.occurred_at,
      new Date().toISOString(),
      event.action,
      event.actor.id,
      event.actor.type ?? null,
      event.actor.name ?? null,
      event.target?.id ?? null,
      event.target?.type ?? null,
      event.target?.name ?? null,
      event.outcome,
      event.source_ip ?? null,
      event.user_agent ?? null,
      event.metadata === undefined ? null : JSON.stringify(event.metadata),
    ]);
  } catch {
    return reply.code(503).send({ error: 'not stored' });
  }
  return reply.code(201).send({ id });
});

process.once('SIGTERM', () => {
  void app
    .close()
    .then(() => pool.end())
    .then(() => process.exit(0));
});
await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) });
