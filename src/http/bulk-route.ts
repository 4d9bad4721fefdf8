import type { FastifyInstance } from 'fastify';
import { IngestError, type FieldIssue } from '../errors.ts';
import type { QueuedEvent } from '../event/queued-event.ts';
import { outcomeWaiters } from '@audit-ingest/batcher';
import { acceptEvents } from './accept-events.ts';
import { BulkBody } from './bulk-body.ts';
import type { IngestContext } from './ingest-context.ts';
import { prepareEvent } from './prepare-event.ts';
import { bulkQuerySchema, validateQuery } from './query.ts';
import { requestSpanOf } from './request-span.ts';
import { isoAt } from '../clock.ts';
import { bodyHeadOf } from '../limits/tenant-rate-limiter.ts';


/** What one bulk answer reports at most: its size stays bounded whatever the body holds. */
const MAX_REPORTED_ISSUES = 100;
const MAX_ISSUES_PER_EVENT = 10;
const MAX_MESSAGE_CHARS = 200;

interface RejectedLine {
  readonly index: number;
  readonly errors: readonly FieldIssue[];
}

/**
 * POST /events: many events in one request, as application/x-ndjson or a JSON array. Each line
 * is validated on its own; valid lines are queued and invalid ones reported by index, unless the
 * client asks `?atomic=true` (then one bad line refuses the whole request). Admission is
 * all-or-nothing: the valid events are queued together or not at all (429/503); with
 * ADMISSION_POLICY=standing a bulk that does not fit yet waits for room first (admission.ts).
 */
export function registerBulkRoute(app: FastifyInstance, context: IngestContext, limits: { maxEvents: number; bodyLimitBytes: number }): void {
  const { admission, fairness, clock, ackMode, rateLimiter } = context;

  app.post<{ Querystring: { atomic?: string } }>(
    '/events',
    // The body parsers read config.bulkMaxEvents: they count the events before parsing any.
    {
      bodyLimit: limits.bodyLimitBytes,
      config: { bulkMaxEvents: limits.maxEvents },
      onRequest: validateQuery(bulkQuerySchema),
      // Bodies may be compressed (decompression stays on); responses never are: no per-request hook for it.
      compress: false,
    },
    async (request, reply) => {
      if (!(request.body instanceof BulkBody)) throw new IngestError('INGEST_ERR_VALIDATION', 'the body must be a JSON array of events or NDJSON', { issues: [{ path: '(body)', message: 'must be an array of events' }] });
      const { lines } = request.body;
      if (lines.length === 0) throw new IngestError('INGEST_ERR_VALIDATION', 'the body holds no events', { issues: [{ path: '(body)', message: 'holds no events' }] });
      if (lines.length > limits.maxEvents) {
        throw new IngestError('INGEST_ERR_TOO_MANY_EVENTS', `${lines.length} events in one request; at most ${limits.maxEvents} (BULK_MAX_EVENTS)`);
      }
      // Per-tenant rate limit: every line sent is charged, valid or not (the gate only checked an
      // estimate; the count is known now, and teaches the estimate for the tenant's next bulk).
      if (rateLimiter && request.tenant !== undefined) {
        const refused = rateLimiter.chargeEvents(request.tenant, lines.length, bodyHeadOf(request.headers));
        if (refused) throw refused;
      }
      const receivedAtIso = isoAt(clock.now());
      const requestSpan = requestSpanOf(request);
      const accepted: { index: number; event: QueuedEvent; tenant: string }[] = [];
      const rejected: RejectedLine[] = [];
      const mismatched: number[] = [];
      lines.forEach((line, index) => {
        if ('parseError' in line) {
          rejected.push({ index, errors: [{ path: '(line)', message: `not valid JSON: ${line.parseError.slice(0, MAX_MESSAGE_CHARS)}` }] });
          return;
        }
        const prepared = prepareEvent(line.value, receivedAtIso, request.tenant, requestSpan);
        if (prepared.ok) accepted.push({ index, event: prepared.event, tenant: prepared.tenant });
        else if (prepared.tenantMismatch) mismatched.push(index);
        else rejected.push({ index, errors: prepared.issues.slice(0, MAX_ISSUES_PER_EVENT) });
      });
      if (mismatched.length > 0) {
        const listed = mismatched.length > MAX_REPORTED_ISSUES ? `${mismatched.slice(0, MAX_REPORTED_ISSUES).join(', ')} and ${mismatched.length - MAX_REPORTED_ISSUES} more` : mismatched.join(', ');
        throw new IngestError('INGEST_ERR_TENANT_MISMATCH', `events ${listed} name another tenant than the API key's "${String(request.tenant)}"; none was queued`);
      }
      if (rejected.length > 0 && (request.query.atomic === 'true' || accepted.length === 0)) {
        const issues = rejected.flatMap((line) => line.errors.map((issue) => ({ path: `[${line.index}].${issue.path}`, message: issue.message })));
        const omitted = issues.length - MAX_REPORTED_ISSUES;
        throw new IngestError('INGEST_ERR_VALIDATION', `${rejected.length} of ${lines.length} events are invalid; none was queued${omitted > 0 ? ` (the first ${MAX_REPORTED_ISSUES} problems are listed, ${omitted} more are not)` : ''}`, {
          issues: omitted > 0 ? issues.slice(0, MAX_REPORTED_ISSUES) : issues,
        });
      }

      if (!admission.waits) {
        // ADMISSION_POLICY=depth: refused at once on the depth read now (fair share, then room).
        const perTenant = new Map<string, number>();
        for (const { tenant } of accepted) perTenant.set(tenant, (perTenant.get(tenant) ?? 0) + 1);
        for (const [tenant, count] of perTenant) {
          const fair = fairness.decide(tenant, count);
          if (!fair.admit) throw new IngestError(fair.code, `tenant ${tenant} holds its fair share of the queue; none was queued`, { retryAfterSeconds: fair.retryAfterSeconds });
        }
        const bytes = accepted.reduce((sum, item) => sum + item.event.bytes, 0);
        const decision = admission.decideBulk(accepted.length, bytes);
        if (!decision.admit) throw new IngestError(decision.code, undefined, { retryAfterSeconds: decision.retryAfterSeconds });
      }
      // ADMISSION_POLICY=standing: acceptEvents decides the share and the room once, with the
      // real count, waiting for them (before the write) up to ADMISSION_WAIT_MS. A client that
      // goes away stops waiting.
      const gone = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableEnded) gone.abort();
      };
      reply.raw.once('close', onClose);
      const events = accepted.map(({ event }) => event);
      const committed = ackMode === 'committed' ? outcomeWaiters(events.length) : undefined;
      try {
        await acceptEvents(context, events, committed?.waiters, gone.signal);
      } finally {
        reply.raw.off('close', onClose);
      }
      const acceptedIds = accepted.map(({ index, event }) => ({ index, id: event.id }));
      if (!committed) return reply.code(202).send({ accepted: acceptedIds, rejected });

      const settled = await committed.outcomes;
      const results = acceptedIds.map((item, i) => ({ ...item, outcome: settled[i] }));
      const allStored = settled.every((outcome) => outcome === 'stored');
      return reply.code(allStored && rejected.length === 0 ? 201 : 207).send({ accepted: results, rejected });
    },
  );
}
