import type { FastifyInstance } from 'fastify';
import type { ItemOutcome } from '../batcher/batcher.ts';
import type { Clock } from '../clock.ts';
import { IngestError } from '../errors.ts';
import type { IngestPipeline } from '../ingest/pipeline.ts';
import type { QueuedEvent } from '../sink/sink.ts';
import type { Admission } from './admission.ts';
import type { TenantFairness } from './tenant-fairness.ts';
import { prepareEvent } from './prepare-event.ts';

export interface EventRouteOptions {
  readonly pipeline: IngestPipeline;
  readonly admission: Admission;
  readonly fairness: TenantFairness;
  readonly clock: Clock;
  readonly ackMode: 'queued' | 'committed';
  readonly bodyLimitBytes: number;
}

/** POST /event: validate, stamp, encode once, enqueue; 202 when queued or 201 when committed. */
export function registerEventRoute(app: FastifyInstance, options: EventRouteOptions): void {
  const { pipeline, admission, fairness, clock, ackMode } = options;

  app.post(
    '/event',
    {
      bodyLimit: options.bodyLimitBytes,
    },
    async (request, reply) => {
      const prepared = prepareEvent(request.body, new Date(clock.now()).toISOString(), request.tenant);
      if (!prepared.ok) {
        if (prepared.tenantMismatch) throw new IngestError('INGEST_ERR_TENANT_MISMATCH', prepared.issues[0]!.message);
        throw new IngestError('INGEST_ERR_VALIDATION', `${prepared.issues.length} field(s) are invalid`, { issues: prepared.issues });
      }
      const queued = prepared.event;
      const { id } = queued;
      const fair = fairness.decide(prepared.tenant, 1);
      if (!fair.admit) throw new IngestError(fair.code, undefined, { retryAfterSeconds: fair.retryAfterSeconds });

      if (ackMode === 'queued') {
        enqueueOrThrow(pipeline, admission, queued);
        return reply.code(202).send({ id });
      }
      const outcome = await new Promise<ItemOutcome>((resolve) => enqueueOrThrow(pipeline, admission, queued, resolve));
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

function enqueueOrThrow(
  pipeline: IngestPipeline,
  admission: Admission,
  event: QueuedEvent,
  waiter?: (outcome: ItemOutcome) => void,
): void {
  const result = pipeline.enqueue(event, waiter);
  if (result.ok) return;
  const code = result.reason === 'closed' ? 'INGEST_ERR_DRAINING' : 'INGEST_ERR_QUEUE_FULL';
  throw new IngestError(code, undefined, { retryAfterSeconds: admission.retryAfterSeconds() });
}
