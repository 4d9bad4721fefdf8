import type { QueuedEvent } from '../event/queued-event.ts';

/** The subjects a stream captures for a prefix (NATS_SUBJECT_PREFIX, default `audit`): `audit.>`. */
export function streamSubjects(prefix: string): string {
  return `${prefix}.>`;
}

/**
 * `audit.<tenant>`. A tenant is 1–64 of [A-Za-z0-9._-]; a `.` would split it into several subject
 * tokens (and `a..b` or `a.` are not valid subjects), so it is written `%2E` (`%` cannot occur in a
 * tenant): each tenant is exactly one token, and `audit.<tenant>` filters exactly one tenant.
 */
export function subjectOfTenant(prefix: string, tenant: string): string {
  return `${prefix}.${tenant.replaceAll('.', '%2E')}`;
}

/** The Nats-Msg-Id of an event: ids are idempotency keys per tenant, so the key is both. */
export function messageIdOf(event: Pick<QueuedEvent, 'tenant' | 'id'>): string {
  return `${event.tenant}/${event.id}`;
}
