import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator } from '../auth/authenticator.ts';
import { IngestError } from '../errors.ts';
import type { Admission } from './admission.ts';
import { sendProblem } from './problem.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of the request's API key; undefined with AUTH=off (the body's tenant is used). */
    tenant: string | undefined;
  }
}

/**
 * The first thing an ingest request meets, before its body is read: who is it (401 / 429 on
 * repeated failures), and is there room (429 / 503)? Both answers cost no body parsing.
 */
export function createIngestGate(options: { admission: Admission; authenticator: Authenticator | undefined }) {
  const { admission, authenticator } = options;
  return async function ingestGate(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    if (authenticator) {
      const result = await authenticator.authenticate(request.headers.authorization, request.ip);
      if (!result.ok) {
        return sendProblem(reply, new IngestError(result.code, undefined, result.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: result.retryAfterSeconds }));
      }
      request.tenant = result.tenant;
    }
    const decision = admission.decide();
    if (!decision.admit) {
      return sendProblem(reply, new IngestError(decision.code, undefined, { retryAfterSeconds: decision.retryAfterSeconds }));
    }
    return undefined;
  };
}
