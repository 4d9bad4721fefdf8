import type { ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator } from '../auth/authenticator.ts';
import { IngestError, stacklessIngestError } from '../errors.ts';
import { bodyHeadOf, type TenantRateLimiter } from '../limits/tenant-rate-limiter.ts';
import type { Admission } from './admission.ts';
import type { TenantFairness } from './tenant-fairness.ts';
import { sendContinueIfAwaited } from './expect-continue.ts';
import { sendProblem } from './problem.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of the request's API key; undefined with AUTH=off (the body's tenant is used). */
    tenant: string | undefined;
  }
}

/**
 * A refused request's body is never read by the service; Node's http server discards what arrives
 * of it (its parser runs in C++ and drops the bytes without handing them to a stream), which costs
 * less than the client's reconnect would, so the connection is kept. Past this many bytes still to
 * come (or a chunked body not yet complete) the answer closes the connection instead: the client
 * is not made to upload megabytes for nothing, and the connection is not held until they arrive.
 */
export const REFUSAL_DISCARD_MAX_BYTES = 64 * 1024;
/**
 * After such an answer and its FIN, how long the socket keeps reading (and discarding) before it
 * is closed: closing with unread bytes makes the kernel send a reset, which can reach a client
 * still writing its body before it has read the answer (nginx's lingering_close, for the same
 * reason). The client closing its side ends the wait at once.
 */
const REFUSAL_LINGER_MS = 2_000;

/** Should a refusal close the connection rather than let the rest of the body be discarded? */
function refusalCloses(request: FastifyRequest): boolean {
  if (request.raw.complete) return false;
  const { bytes } = bodyHeadOf(request.headers);
  if (bytes === undefined) return request.headers['transfer-encoding'] !== undefined;
  return bytes > REFUSAL_DISCARD_MAX_BYTES;
}

/**
 * Once a `Connection: close` answer is written, Node half-closes the socket and destroys it as soon
 * as its FIN is out (destroySoon). Replace that destroy with a linger: destroyed when the client
 * closes its side, or after REFUSAL_LINGER_MS. If Node's internals differ (nothing to replace),
 * the socket is closed as Node does it.
 */
function lingerAfter(response: ServerResponse): void {
  const socket = response.socket;
  // A real TCP socket only (app.inject's responses have none of their own).
  if (!(socket instanceof Socket)) return;
  response.once('finish', () => {
    // Runs after Node's own 'finish' handler, which called socket.destroySoon().
    if (socket.destroyed) return;
    const before = socket.listenerCount('finish');
    // eslint-disable-next-line @typescript-eslint/unbound-method -- the very function destroySoon registered, to remove it; never called through this reference
    socket.removeListener('finish', socket.destroy);
    if (socket.listenerCount('finish') === before) return;
    const timer = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
    timer.unref();
    socket.once('end', () => socket.destroy());
    socket.once('close', () => clearTimeout(timer));
  });
}

/** Answer a refusal before the body: the problem document, closing the connection when the body still to come is large. */
function refuse(request: FastifyRequest, reply: FastifyReply, error: IngestError): void {
  if (refusalCloses(request)) {
    reply.header('connection', 'close');
    lingerAfter(reply.raw);
  }
  sendProblem(reply, error);
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
      refuse(request, reply, stacklessIngestError(decision.code, undefined, { retryAfterSeconds: decision.retryAfterSeconds }));
      return;
    }
    // With a key the tenant is known before the body is read: refuse a tenant over its share
    // now, so a flood costs no parsing (the route checks again with the exact event count).
    if (request.tenant !== undefined) {
      const fair = fairness.decide(request.tenant, 1);
      if (!fair.admit) {
        refuse(request, reply, stacklessIngestError(fair.code, undefined, { retryAfterSeconds: fair.retryAfterSeconds }));
        return;
      }
    }
    // Admitted: a client waiting on `Expect: 100-continue` may send its body now (expect-continue.ts).
    sendContinueIfAwaited(reply.raw);
    done();
  }
  // Callback style (a refusal is sent and done not called): without a key to look up, the gate
  // costs no promise and no microtask on the request's way.
  return function ingestGate(request: FastifyRequest, reply: FastifyReply, done: HookDone): void {
    if (isClosing()) {
      refuse(request, reply, stacklessIngestError('INGEST_ERR_DRAINING', undefined, { retryAfterSeconds: closingRetryAfterSeconds }));
      return;
    }
    if (!authenticator) {
      admitOrRefuse(request, reply, done);
      return;
    }
    authenticator.authenticate(request.headers.authorization, request.ip).then(
      (result) => {
        if (!result.ok) {
          refuse(request, reply, stacklessIngestError(result.code, undefined, result.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: result.retryAfterSeconds }));
          return;
        }
        request.tenant = result.tenant;
        if (rateLimiter) {
          // Before the body is read: a POST /event is charged its one event now, a bulk checked
          // against its estimated events (its lines are charged once counted, in the route);
          // bytes by Content-Length.
          const { bytes, encoded } = bodyHeadOf(request.headers);
          const isBulk = request.routeOptions.url === '/events';
          const refused = rateLimiter.admitRequest(result.tenant, isBulk ? 0 : 1, bytes, encoded);
          if (refused) {
            refuse(request, reply, refused);
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
