import { randomUUID } from 'node:crypto';
import { encodeEventRow } from '../../src/event/copy-row.ts';
import type { QueuedEvent } from '../../src/event/queued-event.ts';
import { auditEventSchema } from '../../src/event/schema.ts';
import { sampleEvent } from './service.ts';

/** One valid event as the pipeline queues it: sampleEvent's fields (overridable), encoded once. */
export function queuedEvent(fields: Record<string, unknown> = {}, id: string = randomUUID()): QueuedEvent {
  const event = auditEventSchema.parse(sampleEvent(fields));
  const row = encodeEventRow(event, id, '2026-11-22T05:00:01.000Z');
  return { id, tenant: event.tenant, row, bytes: Buffer.byteLength(row) };
}
