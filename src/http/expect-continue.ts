import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * `Expect: 100-continue` on the ingest routes: the client waits for "100 Continue" before it sends
 * the body (curl does for bodies over 1 MB, and SDKs can be told to). Node answers 100 at once
 * unless a `checkContinue` listener is there; with this one, an ingest request gets its 100 only
 * once the ingest gate admits it (sendContinueIfAwaited), so a refused client never sends its
 * body at all — Node then closes the connection after the final answer, as RFC 9110 §10.1.1 lets a
 * client that was refused before its body expect. Every other request gets its 100 at once, as
 * before.
 */
const INGEST_PATHS = new Set(['/event', '/events']);

export function deferContinueToIngestGate(server: Server): void {
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    const url = request.url ?? '';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    if (request.method !== 'POST' || !INGEST_PATHS.has(path)) response.writeContinue();
    server.emit('request', request, response);
  });
}

/** Node's marks on a response to an `Expect: 100-continue` request (there since Node 0.x, untyped). */
type ContinueAwaitingResponse = ServerResponse & { _expect_continue?: boolean; _sent100?: boolean };

/** The gate admitted the request: send the 100 its client waits for, if it waits for one. */
export function sendContinueIfAwaited(response: ServerResponse): void {
  const awaiting = response as ContinueAwaitingResponse;
  if (awaiting._expect_continue === true && awaiting._sent100 !== true) awaiting.writeContinue();
}
