import type { FastifyInstance } from 'fastify';
import type { ItemOutcome } from '../batcher/batcher.ts';
import type { Clock } from '../clock.ts';
import { IngestError } from '../errors.ts';
import type { IngestPipeline } from '../ingest/pipeline.ts';
import type { Durability } from '../wal/durability.ts';
import { acceptEvents } from './accept-events.ts';
import type { Admission } from './admission.ts';
import type { TenantFairness } from './tenant-fairness.ts';
import { prepareEvent } from './prepare-event.ts';
import { requestSpanOf } from './request-span.ts';

export interface EventRouteOptions {
  readonly pipeline: IngestPipeline;
  readonly admission: Admission;
  readonly fairness: TenantFairness;
  readonly durability: Durability;
  readonly clock: Clock;
  readonly ackMode: 'queued' | 'committed';
  readonly bodyLimitBytes: number;
}

/** POST /event: validate, stamp, encode once, enqueue; 202 when queued or 201 when committed. */
export function registerEventRoute(app: FastifyInstance, options: EventRouteOptions): void {
  const { pipeline, admission, fairness, durability, clock, ackMode } = options;

  app.post(
    '/event',
    {
      bodyLimit: options.bodyLimitBytes,
    },
    async (request, reply) => {
      const prepared = prepareEvent(request.body, new Date(clock.now()).toISOString(), request.tenant, requestSpanOf(request));
      if (!prepared.ok) {
        if (prepared.tenantMismatch) throw new IngestError('INGEST_ERR_TENANT_MISMATCH', prepared.issues[0]!.message);
        throw new IngestError('INGEST_ERR_VALIDATION', `${prepared.issues.length} field(s) are invalid`, { issues: prepared.issues });
      }
      const queued = prepared.event;
      const { id } = queued;
      const fair = fairness.decide(prepared.tenant, 1);
      if (!fair.admit) throw new IngestError(fair.code, undefined, { retryAfterSeconds: fair.retryAfterSeconds });

      const context = { pipeline, durability, admission };
      if (ackMode === 'queued') {
        await acceptEvents(context, [queued]);
        return reply.code(202).send({ id });
      }
      let settle: (outcome: ItemOutcome) => void = () => {};
      const settled = new Promise<ItemOutcome>((resolve) => (settle = resolve));
      await acceptEvents(context, [queued], [settle]);
      const outcome = await settled;
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
