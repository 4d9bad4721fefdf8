import type { SpanContext } from '@opentelemetry/api';
import type { FieldIssue } from '../errors.ts';
import { encodeEventRow } from '../event/copy-row.ts';
import { newEventId } from '../event/event-id.ts';
import { fastValidate } from '../event/fast-validate.ts';
import { auditEventSchema } from '../event/schema.ts';
import type { QueuedEvent } from '../event/queued-event.ts';

export type PreparedEvent =
  | { readonly ok: true; readonly event: QueuedEvent; readonly tenant: string }
  | { readonly ok: false; readonly issues: FieldIssue[]; readonly tenantMismatch?: true };

const TENANT_MISMATCH = Symbol('tenant mismatch');

/**
 * With an API key, the key decides the tenant: a body without `tenant` gets the key's, a body
 * whose `tenant` differs is refused (403). Returns the body to validate (no wrapper per event).
 */
function applyKeyTenant(body: unknown, keyTenant: string | undefined): unknown {
  if (keyTenant === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  const bodyTenant = (body as { tenant?: unknown }).tenant;
  if (bodyTenant === undefined) return { ...body, tenant: keyTenant };
  return bodyTenant === keyTenant ? body : TENANT_MISMATCH;
}

/**
 * Validate one event body and turn it into its queued form: the id settled (the client's, or a
 * new UUIDv7), received_at stamped, the COPY row encoded once. Pure apart from the id and time.
 */
export function prepareEvent(rawBody: unknown, receivedAtIso: string, keyTenant?: string, requestSpan?: SpanContext): PreparedEvent {
  const body = applyKeyTenant(rawBody, keyTenant);
  if (body === TENANT_MISMATCH) {
    return { ok: false, tenantMismatch: true, issues: [{ path: 'tenant', message: `must be the API key's tenant "${keyTenant}"` }] };
  }
  // The common valid event is checked by hand; anything else (every refusal) goes to zod.
  let event = fastValidate(body);
  if (event === undefined) {
    const parsed = auditEventSchema.safeParse(body);
    if (!parsed.success) {
      return {
        ok: false,
        issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join('.') || '(body)', message: issue.message })),
      };
    }
    event = parsed.data;
  }
  const id = event.id ?? newEventId();
  const row = encodeEventRow(event, id, receivedAtIso);
  const base = { id, tenant: event.tenant, row, bytes: Buffer.byteLength(row) };
  const queued: QueuedEvent = requestSpan ? { ...base, requestSpan } : base;
  return { ok: true, tenant: event.tenant, event: queued };
}
