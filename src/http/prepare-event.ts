import { v7 as uuidv7 } from 'uuid';
import type { FieldIssue } from '../errors.ts';
import { encodeEventRow } from '../event/copy-row.ts';
import { auditEventSchema } from '../event/schema.ts';
import type { QueuedEvent } from '../sink/sink.ts';

export type PreparedEvent = { readonly ok: true; readonly event: QueuedEvent } | { readonly ok: false; readonly issues: FieldIssue[] };

/**
 * Validate one event body and turn it into its queued form: the id settled (the client's, or a
 * new UUIDv7), received_at stamped, the COPY row encoded once. Pure apart from the id and time.
 */
export function prepareEvent(body: unknown, receivedAtIso: string): PreparedEvent {
  const parsed = auditEventSchema.safeParse(body);
  if (!parsed.success) {
    return {
      ok: false,
      issues: parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join('.') || '(body)', message: issue.message })),
    };
  }
  const event = parsed.data;
  const id = event.id ?? uuidv7();
  const row = encodeEventRow(event, id, receivedAtIso);
  return { ok: true, event: { id, row, bytes: Buffer.byteLength(row) } };
}
