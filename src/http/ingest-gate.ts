import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator } from '../auth/authenticator.ts';
import { IngestError } from '../errors.ts';
import type { TenantRateLimiter } from '../limits/tenant-rate-limiter.ts';
import type { Admission } from './admission.ts';
import type { TenantFairness } from './tenant-fairness.ts';
import { sendProblem } from './problem.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of the request's API key; undefined with AUTH=off (the body's tenant is used). */
    tenant: string | undefined;
  }
}

/**
 * The first thing an ingest request meets, before its body is read: who is it (401 / 429 on
 * repeated failures), is there room (429 / 503), and is its tenant within its share (429)? None
 * of these answers costs body parsing.
 */
export function createIngestGate(options: {
  admission: Admission;
  fairness: TenantFairness;
  authenticator: Authenticator | undefined;
  /** Per-tenant rate limits; undefined when off (TENANT_* unset): then nothing is checked. */
  rateLimiter?: TenantRateLimiter | undefined;
  /** The app is closing: requests still arriving on kept-alive connections get a counted INGEST_ERR_DRAINING. */
  isClosing: () => boolean;
  closingRetryAfterSeconds: number;
}) {
  const { admission, fairness, authenticator, rateLimiter, isClosing, closingRetryAfterSeconds } = options;
  /** Room and share, once the tenant (if any) is known: answers the refusal, or lets the request on. */
  function admitOrRefuse(request: FastifyRequest, reply: FastifyReply, done: HookDone): void {
    const decision = admission.decide();
    if (!decision.admit) {
      sendProblem(reply, new IngestError(decision.code, undefined, { retryAfterSeconds: decision.retryAfterSeconds }));
      return;
    }
    // With a key the tenant is known before the body is read: refuse a tenant over its share
    // now, so a flood costs no parsing (the route checks again with the exact event count).
    if (request.tenant !== undefined) {
      const fair = fairness.decide(request.tenant, 1);
      if (!fair.admit) {
        sendProblem(reply, new IngestError(fair.code, undefined, { retryAfterSeconds: fair.retryAfterSeconds }));
        return;
      }
    }
    done();
  }
  // Callback style (a refusal is sent and done not called): without a key to look up, the gate
  // costs no promise and no microtask on the request's way.
  return function ingestGate(request: FastifyRequest, reply: FastifyReply, done: HookDone): void {
    if (isClosing()) {
      sendProblem(reply, new IngestError('INGEST_ERR_DRAINING', undefined, { retryAfterSeconds: closingRetryAfterSeconds }));
      return;
    }
    if (!authenticator) {
      admitOrRefuse(request, reply, done);
      return;
    }
    authenticator.authenticate(request.headers.authorization, request.ip).then(
      (result) => {
        if (!result.ok) {
          sendProblem(reply, new IngestError(result.code, undefined, result.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: result.retryAfterSeconds }));
          return;
        }
        request.tenant = result.tenant;
        if (rateLimiter) {
          // Before the body is read: a POST /event is charged its one event now, a bulk only
          // checked (its lines are charged once counted, in the route); bytes by Content-Length.
          const length = request.headers['content-length'];
          const isBulk = request.routeOptions.url === '/events';
          const refused = rateLimiter.admitRequest(result.tenant, isBulk ? 0 : 1, length === undefined ? undefined : Number(length));
          if (refused) {
            sendProblem(reply, refused);
            return;
          }
        }
        admitOrRefuse(request, reply, done);
      },
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
    );
  };
}

type HookDone = (error?: Error) => void;
