import type { FastifyInstance } from 'fastify';
import { IngestError } from '../errors.ts';
import { outcomeWaiters } from '@audit-ingest/batcher';
import { acceptEvents, acceptEventsNow } from './accept-events.ts';
import type { IngestContext } from './ingest-context.ts';
import { prepareEvent } from './prepare-event.ts';
import { eventQuerySchema, validateQuery } from './query.ts';
import { requestSpanOf } from './request-span.ts';
import { isoAt } from '../clock.ts';
import { nextCheckPhase } from './reply-batch.ts';

const ID_BODY = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'], additionalProperties: false } as const;

/** POST /event: validate, stamp, encode once, enqueue; 202 when queued or 201 when committed. */
export function registerEventRoute(app: FastifyInstance, context: IngestContext, limits: { bodyLimitBytes: number }): void {
  const { admission, fairness, clock, ackMode } = context;

  app.post(
    '/event',
    {
      bodyLimit: limits.bodyLimitBytes,
      onRequest: validateQuery(eventQuerySchema),
      // Bodies may be compressed (decompression stays on); responses never are: no per-request hook for it.
      compress: false,
      // Compiled serialisers (fast-json-stringify) for the two success bodies; problems keep JSON.stringify.
      schema: { response: { 201: ID_BODY, 202: ID_BODY } },
    },
    async (request, reply) => {
      const prepared = prepareEvent(request.body, isoAt(clock.now()), request.tenant, requestSpanOf(request));
      if (!prepared.ok) {
        if (prepared.tenantMismatch) throw new IngestError('INGEST_ERR_TENANT_MISMATCH', prepared.issues[0]!.message);
        throw new IngestError('INGEST_ERR_VALIDATION', `${prepared.issues.length} field(s) are invalid`, { issues: prepared.issues });
      }
      const queued = prepared.event;
      const { id } = queued;
      if (!admission.waits) {
        // ADMISSION_POLICY=depth: the share is decided here, at once; with standing (the default)
        // acceptEvents decides it once (and may wait for it), as for a bulk.
        const fair = fairness.decide(prepared.tenant, 1);
        if (!fair.admit) throw new IngestError(fair.code, undefined, { retryAfterSeconds: fair.retryAfterSeconds });
      }

      if (ackMode === 'queued') {
        const accepting = acceptEventsNow(context, [queued]);
        if (accepting) await accepting;
        else await nextCheckPhase();
        return reply.code(202).send({ id });
      }
      const { waiters, outcomes } = outcomeWaiters(1);
      await acceptEvents(context, [queued], waiters);
      const [outcome] = await outcomes;
      if (outcome === 'rejected') {
        throw new IngestError(
          'INGEST_ERR_REJECTED_BY_DATABASE',
          'the database refused this event for good (a constraint or a value it cannot store); it is in the dead-letter queue. Do not retry it unchanged',
        );
      }
      if (outcome !== 'stored') {
        throw new IngestError('INGEST_ERR_NOT_COMMITTED', 'the event could not be committed; it is safe to retry with the same id', {
          retryAfterSeconds: admission.retryAfterSeconds(),
        });
      }
      return reply.code(201).send({ id });
    },
  );
}
