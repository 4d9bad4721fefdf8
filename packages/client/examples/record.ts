/**
 * Record a few audit events and close (flushing) on SIGTERM/SIGINT or when done.
 *
 *   AUDIT_URL=http://localhost:8080 AUDIT_API_KEY=aik_... npm run example -w @audit-ingest/client
 *   AUDIT_URL=http://localhost:8080 AUDIT_TENANT=acme npm run example -w @audit-ingest/client   # AUTH=off
 *
 * With a key the key decides the tenant; with AUTH=off each event names it.
 */
import { AuditClient } from '@audit-ingest/client';

const client = new AuditClient({
  url: process.env.AUDIT_URL ?? 'http://localhost:8080',
  ...(process.env.AUDIT_API_KEY ? { apiKey: process.env.AUDIT_API_KEY } : {}),
  onRefused: (refused) => console.error(`event ${refused.id} refused: ${refused.code} ${JSON.stringify(refused.problems)}`),
  onRetry: ({ attempt, delayMs, error, events }) => console.error(`retrying ${events} events in ${Math.round(delayMs)} ms (attempt ${attempt}): ${error.message}`),
});

const tenant = process.env.AUDIT_TENANT ? { tenant: process.env.AUDIT_TENANT } : {};

// Flush on shutdown: the application decides when that is; close() sends what is buffered.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => void client.close({ deadlineMs: 5_000 }).then(() => process.exit(0)));
}

const results = await Promise.all([
  client.record({ ...tenant, occurred_at: new Date().toISOString(), action: 'document.update', actor: { id: 'user:42', type: 'user' }, target: { id: 'doc:9', type: 'document' } }),
  client.record({ ...tenant, occurred_at: new Date().toISOString(), action: 'user.login', actor: { id: 'user:42' }, outcome: 'success', source_ip: '203.0.113.7' }),
  client.record({ ...tenant, occurred_at: 'yesterday', action: 'user.login', actor: { id: 'user:43' } }), // refused: occurred_at
]);
for (const result of results) console.log(result.status, result.id);
await client.close();
