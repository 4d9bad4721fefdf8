/**
 * The lowest floor of a refusal: node:http with no framework, answering every POST /event and
 * POST /events with a precomputed 429 problem+json before the body is read (Node's parser discards
 * it), as bench/servers/bare-refuse.ts does with Fastify. What any refused HTTP/1.1 request costs
 * a Node process here: the parse, the request and response objects, one write.
 * PORT and HOST from the environment; GET /healthz for readiness.
 */
import http from 'node:http';

const PROBLEM = JSON.stringify({ type: 'urn:audit-ingest:problem:INGEST_ERR_TENANT_RATE_LIMITED', title: 'Tenant rate limited', status: 429, code: 'INGEST_ERR_TENANT_RATE_LIMITED' });
const REFUSAL_HEADERS = { 'content-type': 'application/problem+json; charset=utf-8', 'content-length': Buffer.byteLength(PROBLEM), 'retry-after': '1' };

const server = http.createServer((request, response) => {
  if (request.method === 'POST' && (request.url === '/event' || request.url === '/events')) {
    response.writeHead(429, REFUSAL_HEADERS).end(PROBLEM);
    return;
  }
  if (request.method === 'GET' && request.url === '/healthz') {
    response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    return;
  }
  response.writeHead(404).end();
});

process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1');
