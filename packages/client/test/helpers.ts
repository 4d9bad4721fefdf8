/** What the client's test files share: a valid event, an API key for a tenant, the tenant's rows. */
import assert from 'node:assert/strict';
import type { TestDatabase } from '../../../test/helpers/database.ts';
import { runScript } from '../../../test/helpers/run-script.ts';
import type { AuditEvent } from '../src/index.ts';

let sequence = 0;
/** A valid event; each call differs (actor id, request id) unless `fields` say otherwise. */
export function auditEvent(fields: Partial<AuditEvent> = {}): AuditEvent {
  sequence += 1;
  return {
    occurred_at: '2026-12-03T05:00:00.000Z',
    action: 'document.update',
    actor: { id: `user:${sequence}`, type: 'user' },
    target: { id: 'doc:9', type: 'document' },
    outcome: 'success',
    metadata: { request_id: `r-${sequence}` },
    ...fields,
  };
}

/** A new API key for `tenant` (`npm run keys -- create`). */
export async function createKey(db: TestDatabase, tenant: string): Promise<string> {
  const { code, stdout, stderr } = await runScript('keys', ['create', '--tenant', tenant], { DATABASE_URL: db.url });
  assert.equal(code, 0, stderr);
  return stdout.trimEnd().split('\n').at(-1)!;
}

/** The tenant's rows: how many, and how many distinct ids. */
export async function rowsOf(db: TestDatabase, tenant: string): Promise<{ count: number; distinct: number }> {
  const result = await db.pool.query<{ n: string; ids: string }>('SELECT count(*) AS n, count(DISTINCT id) AS ids FROM events WHERE tenant = $1', [tenant]);
  return { count: Number(result.rows[0]!.n), distinct: Number(result.rows[0]!.ids) };
}
